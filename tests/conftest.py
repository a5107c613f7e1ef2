"""Fixtures shared by every test; fixture modules live in tests/fixtures/."""

pytest_plugins: list[str] = [
    "tests.fixtures.postgres",
    "tests.fixtures.s3",
    "tests.fixtures.server",
]
