"""The domain: shapes in SageMaker's vocabulary, enums, state machines and errors. No I/O."""
