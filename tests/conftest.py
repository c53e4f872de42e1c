"""Root conftest: expensive fixtures are session-scoped and live in tests/fixtures/, one module per package."""

pytest_plugins = [
    "tests.fixtures.faces",
    "tests.fixtures.training",
    "tests.fixtures.export",
    "tests.fixtures.server",
    "tests.fixtures.provenance",
    "tests.fixtures.triton",
    "tests.fixtures.evaluation",
]
