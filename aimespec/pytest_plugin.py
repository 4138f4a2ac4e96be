"""pytest plugin (placeholder until the plugin issue lands): registers `--aimespec`."""


def pytest_addoption(parser):
    group = parser.getgroup("aimespec")
    group.addoption("--aimespec", action="store_true", default=False,
                    help="Run with full aimespec contract checking switched on.")
