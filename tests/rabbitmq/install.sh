#!/usr/bin/env bash
# Installs RabbitMQ from Debian's packages if it is not installed, for the peering tests
# (tests/run and .ci/run call this). The package may start the system node (on 5672,
# with epmd on 4369): the tests use a private one (tests/rabbitmq/start.sh), so the
# service this install started is stopped and disabled. No systemd needed. Needs root
# or password-less sudo; says what to do otherwise.
set -euo pipefail

if [ -x /usr/lib/rabbitmq/bin/rabbitmq-server ]; then
    exit 0
fi
sudo=""
if [ "$(id -u)" != 0 ]; then
    if ! sudo -n true 2>/dev/null; then
        echo "tests/rabbitmq/install.sh: RabbitMQ is not installed and this user cannot" >&2
        echo "install it: run  sudo apt-get install rabbitmq-server  (the system service" >&2
        echo "may stay stopped: the tests start a private node), or set" >&2
        echo "FEDAMQ_TEST_RABBITMQ_URL to a RabbitMQ the tests may use." >&2
        exit 1
    fi
    sudo="sudo -n"
fi
echo "tests/rabbitmq/install.sh: installing rabbitmq-server (apt-get)" >&2
$sudo apt-get update >&2
$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y rabbitmq-server >&2
$sudo service rabbitmq-server stop >&2 || true
if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
    $sudo systemctl disable --now rabbitmq-server >&2 || true
fi
