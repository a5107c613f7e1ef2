"""Asynchronous inference: the dispatcher that feeds queued requests to the one inference path,
where their inputs and outputs live, and the notifications of their outcomes."""
