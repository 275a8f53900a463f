"""A local cluster booted with a boot script (``LocalOptions.boot_script``; what
bench/boot_join.py boots its runtime-install baseline with): every VM's user-data is the script,
then the launch template's cloud-config, as one MIME multi-part document that cloud-init reads
in that order. And the baseline's script itself: the build phases of the very component
documents bake bakes, as shell that bash parses and shellcheck passes, with every download
checked against the catalog's SHA-256."""

from __future__ import annotations

import email
import importlib.util
import shutil
import subprocess
from pathlib import Path

import pytest

from bake.localcluster.vm import with_boot_script
from bake.render import AgentSource, RenderOptions, render_image_documents

ROOT = Path(__file__).resolve().parents[2]
CLOUD_CONFIG = b"#cloud-config\nruncmd:\n  - [systemctl, start, --no-block, bake-node.service]\n"


def _bench():
    spec = importlib.util.spec_from_file_location("boot_join", ROOT / "bench" / "boot_join.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_boot_script_runs_before_the_launch_templates_cloud_config():
    message = email.message_from_bytes(with_boot_script(CLOUD_CONFIG, "#!/bin/bash\necho hi\n"))
    assert message.is_multipart()
    parts = [(p.get_content_type(), p.get_payload(decode=True))
             for p in message.get_payload()]
    assert parts == [("text/x-shellscript", b"#!/bin/bash\necho hi\n"),
                     ("text/cloud-config", CLOUD_CONFIG)]


def test_the_baseline_script_is_every_build_step_of_the_baked_components(standin_factory,
                                                                         tmp_path):
    bench = _bench()
    mirror = standin_factory(runtime="os-package", flavor="cluster")
    docs = render_image_documents(mirror.release, RenderOptions(
        mirror="http://10.0.0.1:8080/mirror",
        agent=AgentSource(url="http://10.0.0.1:8080/agent/bake-node.tar.gz",
                          sha256="a" * 64, version="0.0.0")))
    script = bench.baseline_script(docs, "http://10.0.0.1:8080/apt")
    path = tmp_path / "baseline.sh"
    path.write_text(script)
    subprocess.run(["bash", "-n", str(path)], check=True)
    if shutil.which("shellcheck") is None:
        pytest.fail("shellcheck is not installed (make deb-deps installs it)")
    check = subprocess.run(["shellcheck", str(path)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout
    for doc in docs.components:
        steps = [s for ph in doc.data["phases"] if ph["name"] == "build" for s in ph["steps"]]
        ran = f"{doc.name}: build" in script
        assert ran == (doc.name not in bench.BUILD_ONLY), doc.name
        for step in steps if ran else ():
            if step["action"] == "WebDownload":
                for i in step["inputs"]:
                    assert f"fetch {i['source']} {i['destination']} {i['checksum']}\n" in script
            if step["action"] == "ExecuteBash":
                assert "\n".join(step["inputs"]["commands"]) in script, step["name"]
    assert "deb [trusted=yes] http://10.0.0.1:8080/apt ./" in script
    assert "apt-get install -y --no-install-recommends containerd runc" in script
