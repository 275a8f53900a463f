"""Every rendered text is parsed or checked after render: TOML, JSON, shell scripts (bash -n),
and every ExecuteBash step of a component; a broken one fails naming where it is."""

from __future__ import annotations

import pytest

from bake.errors import RenderError
from bake.templates import check_rendered, check_shell


@pytest.mark.parametrize(
    ("label", "text", "expected"),
    [
        ("components/files/containerd-config-v2.toml.j2", 'version = 2\n[plugins\n',
         "rendered invalid TOML"),
        ("x/y.json.j2", '{"a": 1,}', "rendered invalid JSON"),
        ("components/files/bake-images-import.sh.j2", "if true; then\n  echo\n",
         "components/files/bake-images-import.sh.j2 rendered a shell script bash rejects"),
    ],
)
def test_a_broken_rendering_is_refused_with_its_name(label, text, expected):
    with pytest.raises(RenderError) as info:
        check_rendered(label, text)
    assert expected in info.value.format_message()


def test_the_broken_step_among_many_is_named():
    scripts = {
        "component bake-kubernetes, phase build, step Install": "set -e\necho ok\n",
        "component bake-images, phase build, step ImportImages": "for i in a b; do\n echo\n",
        "component bake-hygiene, phase build, step Clean": "rm -f /tmp/x\n",
    }
    with pytest.raises(RenderError, match="^component bake-images, phase build, step "
                       "ImportImages rendered a shell script bash rejects: "):
        check_shell(scripts)
    check_shell({k: v for k, v in scripts.items() if "bake-images" not in k})


def test_shipped_templates_pass_their_checks():
    from bake.catalog import load_catalog, resolve
    from bake.render import RenderOptions, render_image_documents

    docs = render_image_documents(resolve(load_catalog(), "1.30.12", "amd64"), RenderOptions())
    assert len(docs.components) >= 6
