"""``bake verify``: run the testinfra suite against a local image or a live node."""

from __future__ import annotations

from pathlib import Path

import click


@click.command()
@click.option("--image", metavar="ID|BUILD_ID|PATH",
              help="Local image: build id, its AMI id, or a path (image dir, rootfs dir, "
              "rootfs.tar.zst). Checked through testinfra's chroot backend (needs root).")
@click.option("--host", metavar="SPEC",
              help="Live node as a testinfra host spec, e.g. ssh://admin@10.0.0.5.")
@click.option("--log-dir", type=click.Path(file_okay=False, path_type=Path),
              help="Where to write junit.xml and pytest.log (default: <data-dir>/verify/...).")
@click.pass_obj
def verify(obj, image: str | None, host: str | None, log_dir: Path | None) -> None:
    """Run the testinfra checks against a baked image or a live node.

    \b
    Examples:
      sudo bake verify --image 1.30.12-amd64-20260101T000000Z
      bake verify --host ssh://admin@10.0.0.5
    """
    from bake.verify import VerifyFailed, VerifyOptions
    from bake.verify import verify as run_verify

    options = VerifyOptions(data_dir=obj.data_dir, image=image, host=host, log_dir=log_dir)
    def progress(line: str) -> None:  # failures are listed once, below, on stdout
        if not line.startswith("verify: FAILED "):
            click.echo(line, err=True)

    result = run_verify(options, progress=progress)
    target = image or host
    if result.ok:
        click.echo(f"verify: OK: {result.summary()} on {target}")
        return
    for test_id, reason in result.failures:
        click.echo(f"FAILED {test_id}: {reason}")
    raise VerifyFailed(f"{result.failed + result.errors} image check(s) failed on {target} "
                       f"({result.summary()}); report: {result.junit_path}")
