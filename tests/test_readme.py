"""The README's Python example runs as written and produces what its comments say."""

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_python_example_runs(tmp_path, monkeypatch):
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.S)
    assert blocks, "README has no Python example"
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(blocks[0], str(README), "exec"), namespace)
    assert tuple(namespace["out"].image.shape) == (8, 3, 128, 128)
    assert (tmp_path / "my-model" / "model.safetensors").is_file()
    assert (tmp_path / "my-model" / "config.json").is_file()


def test_readme_test_command_is_what_ci_runs():
    text = README.read_text(encoding="utf-8")
    after_marker = text.split("<!-- ci:test-command -->", 1)[1]
    command = re.search(r"```bash\n(.*?)\n```", after_marker, flags=re.S).group(1)
    assert "pytest" in command and "python3.11 -m venv" in command
    assert "README.md" in (README.parent / ".ci" / "run").read_text()
