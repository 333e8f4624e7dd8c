"""`make demo-es`: `setup`, `validate` and `once` against the Azure simulator and the Elasticsearch test
server, run as the README shows them (`metrics-poller <command> --config FILE`), on one machine."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

from metrics_poller.simulator import SimSpec, Simulator
from metrics_poller.testing.es_server import ElasticsearchServer


def main(out_dir: str = "out/demo-es") -> int:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    key_file = out / "es.key"
    spec = SimSpec(seed=42, subscriptions=1, accounts_per_region=2, other_accounts_per_region=1)
    with Simulator(spec) as sim, ElasticsearchServer(api_key="demo-es-admin-key") as es:
        key_file.write_text(es.create_api_key("metrics-poller-demo") + "\n")
        key_file.chmod(0o600)
        config = {
            "azure": sim.azure_config(),
            "elasticsearch": {"hosts": [es.url], "api_key_file": str(key_file.resolve())},
            "state": {"backend": "file", "path": str((out / "cursors.json").resolve())},
            "http": {"listen": None},
            "logging": {"level": "WARNING"},
        }
        path = out / "poller.yaml"
        path.write_text(yaml.safe_dump(config))
        print(f"elasticsearch test server: {es.url}; Azure simulator: {sim.url}; configuration: {path}")
        for command in ("setup", "validate", "once"):
            print(f"$ metrics-poller {command} --config {path}", flush=True)
            code = subprocess.run([sys.executable, "-m", "metrics_poller", command, "--config", str(path)]).returncode
            if code != 0:
                print(f"metrics-poller {command} exited with {code}", file=sys.stderr)
                return code
        print(f"documents in metrics-azure.open_ai-default: {len(es.documents('metrics-azure.open_ai-default'))}")
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
