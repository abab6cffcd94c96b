"""pytest plugin for softhsm/moto-conformance: moto's own tests in moto's server mode against a
fresh Keyward per test.

- Keyward (development default, AWS endpoint on a fixed port, since moto reads the endpoint when
  a test module is imported) starts before each test on an empty data directory and stops after
  it: the reset moto's own server does through its reset API.
- The server runs in the region the test (or else its module) names first (moto's default is
  us-east-1), in account 123456789012 with ARNs in AWS's partition, as moto's are.
- moto's credential mocking is off: its fake key id is not one Keyward knows, so clients sign
  with the development key pair instead.
"""

import inspect
import os
import re
import subprocess
import time

import pytest
from moto.core.config import default_user_config

default_user_config.setdefault("core", {})["mock_credentials"] = False

BIN = os.environ["KEYWARD_BIN"]
PORT = int(os.environ.get("KEYWARD_MOTO_PORT", "7599"))
REGION = re.compile(r"\b(us|eu|ap|sa|ca|me|af)-[a-z]+-\d\b")


def test_region(item):
    """The first region the test's own code names, else its module's, else moto's default."""
    for part in (item.function, item.module):
        try:
            found = REGION.search(inspect.getsource(part))
        except (OSError, TypeError):
            continue
        if found:
            return found.group(0)
    return "us-east-1"


@pytest.fixture(autouse=True)
def keyward_server(request, tmp_path):
    region = test_region(request.node)
    data = tmp_path / "data"
    config = tmp_path / "keyward.toml"
    config.write_text(
        f'data_dir = "{data}"\n'
        f'region = "{region}"\n'
        'account_id = "123456789012"\n'
        'arn_partition = "aws"\n'
        "[root_of_trust]\n"
        'type = "development"\n'
    )
    log = open(tmp_path / "server.log", "wb")
    server = subprocess.Popen(
        [BIN, "serve", "--config", str(config), "--listen", "127.0.0.1:0",
         "--aws-listen", f"127.0.0.1:{PORT}"],
        stdout=subprocess.PIPE, stderr=log,
    )
    deadline = time.monotonic() + 60
    for line in server.stdout:
        if line.startswith(b"keyward listening on"):
            break
        if time.monotonic() > deadline:
            break
    else:
        raise RuntimeError("keyward did not start: " + (tmp_path / "server.log").read_text())
    os.environ["AWS_DEFAULT_REGION"] = region
    yield
    server.terminate()
    try:
        server.wait(timeout=30)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()
    log.close()
