"""The model server: the container contract, the V2 protocol, runtimes, codecs and batching."""
