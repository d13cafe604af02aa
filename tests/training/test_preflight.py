"""Flags the reward service must know are checked before torch loads (`service.training.preflight`).

A typo in an objective, judge or task name used to stop `paretorm train` only after torch, the policy, its
reference and the rollout engine had loaded (for GRPO's ``--weights``, after the first rollout). Every case
here runs `paretorm train`'s own entry point against a real `paretorm serve`, in one fresh interpreter that
must end without torch imported, and must exit 2 with the one line that names the flag.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.service_process import ServiceProcess
from tests.training.train_process import ENV

pytestmark = pytest.mark.timeout(120)

DRIVER = """
import contextlib, io, json, sys
from service.training.cli import main
results = []
for args in json.loads(sys.argv[1]):
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        results.append([main(args), err.getvalue()])
print(json.dumps({"results": results, "torch_imported": "torch" in sys.modules}))
"""


def _cases(tmp_path: Path) -> list[tuple[list[str], str]]:
    only_chat = tmp_path / "only-chat.json"
    only_chat.write_text(json.dumps({"chat": {"judges": [{"name": "all_lowercase"}]}}))
    return [
        (["grpo", "--weights", "helpsteer-helpfulness=1", "--policy", str(tmp_path / "nowhere")],
         "not a local model directory (no config.json)"),
        (["grpo", "--weights", "helpsteer-helpfulnes=1"],
         "--weights: weights names unknown objective(s) ['helpsteer-helpfulnes']"),
        (["grpo", "--combine", "direction", "--direction", "helpsteer-helpfulness=1,nope=1"],
         "--direction: direction names unknown objective(s) ['nope']"),
        (["grpo", "--weights", "helpsteer-verbosity=1", "--rule-reward", "helpsteer-verbosity=length"],
         "rule reward names ['helpsteer-verbosity'] clash with the service's objectives"),
        (["dpa", "--dpa-objectives", "helpsteer-helpfulness,nope"], "--dpa-objectives ['nope'] not among"),
        (["modpo", "--objective", "brevity", "--rule-reward", "brevity", "--weights", "brevity=0.5,nope=0.5"],
         "--weights ['nope']: not an objective of the service or a --rule-reward"),
        (["cgpo", "--judge", "no_such_judge"], "judges ['no_such_judge'] are not offered by the service"),
        (["cgpo", "--judge", "all_lowercase", "--reward", "nope"], "reward 'nope' is not a service output"),
        (["cgpo", "--tasks", str(only_chat)],
         "prompts are tagged with tasks ['default'] that --tasks does not define"),
    ]  # fmt: skip


def test_flags_the_service_lacks_stop_the_run_before_torch_loads(
    tmp_path: Path, tiny_policy_dir: Path, prompts_file: Path, reward_service: ServiceProcess
) -> None:
    cases = _cases(tmp_path)
    common = ["--policy", str(tiny_policy_dir), "--prompts", str(prompts_file), "--steps", "1",
              "--out", str(tmp_path / "out"), "--reward-url", reward_service.url]  # fmt: skip
    argv = [[*extra[:1], *common, *extra[1:]] for extra, _ in cases]
    done = subprocess.run([sys.executable, "-c", DRIVER, json.dumps(argv)], env=ENV, capture_output=True,
                          text=True, timeout=100)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.splitlines()[-1])
    for (extra, message), (code, stderr) in zip(cases, report["results"], strict=True):
        assert code == 2, (extra, stderr)
        last = stderr.strip().splitlines()[-1]  # after the client's INFO lines, the one line that says why
        assert last.startswith(f"paretorm train {extra[0]}: ") and message in last, (extra, stderr)
    assert not report["torch_imported"]
    assert not (tmp_path / "out").exists()  # nothing was written either
