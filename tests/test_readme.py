"""The README stays a user's page that cannot drift from the code: at most 25 KB, and its
configuration reference lists every setting of our configs with the configs' defaults."""

import ast
import re
from pathlib import Path

import pytest

from rllib_hatrpo import HAA2CConfig, HAPPOConfig, HATRPOConfig, TRPOConfig
from rllib_hatrpo.schema import builder_fields

README = Path(__file__).resolve().parents[1] / "README.md"


def reference() -> str:
    text = README.read_text()
    start = text.index("## Configuration reference")
    return text[start : text.index("\n## ", start + 1)]


def test_readme_is_at_most_25_kb():
    assert README.stat().st_size <= 25 * 1024


@pytest.mark.parametrize("config_cls", [HATRPOConfig, HAPPOConfig, HAA2CConfig, TRPOConfig])
def test_reference_names_every_setting_of_our_builders(config_cls):
    ours = {
        **builder_fields(config_cls, "training", own_only=True),
        **builder_fields(config_cls, "fault_tolerance", own_only=True),
    }
    missing = [field for field in ours if f"`{field}`" not in reference()]
    assert not missing, missing


def test_reference_defaults_are_the_configs_defaults():
    checked = 0
    config = HATRPOConfig()
    for line in reference().splitlines():
        if line.startswith("| HAPPO / HAA2C field"):
            config = HAPPOConfig()
        match = re.match(r"\| `(\w+)`[^|]*\| ([^|]+) \|", line)
        if not match or not hasattr(config, match.group(1)):
            continue
        try:
            documented = ast.literal_eval(match.group(2).strip())
        except (ValueError, SyntaxError):
            continue  # not a literal, e.g. "RLlib"
        assert documented == getattr(config, match.group(1)), line
        checked += 1
    assert checked >= 25
