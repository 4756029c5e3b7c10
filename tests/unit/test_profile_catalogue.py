"""The load profiles as `opconform load` reads them before Locust starts (loadtests/catalogue.py):
from each profile file's own Profile(...), never from a second list of names."""

from __future__ import annotations

from pathlib import Path

from opconform.loadtests.catalogue import PROFILE_DIR, ProfileSpec, explicit_rate, profiles

PROFILE_FILE = '''"""probe: sends a probe at the rate it is told.

More text that is not the summary."""

from opconform.loadtests.llm import Profile, use_profile

def expectations(samples, settings):
    return []

use_profile(
    Profile(
        "probe",
        duration="45s",
        needs_limits=("rpm",),
        rate_replaces_rpm=True,
        open_loop="rate",
        expectations=expectations,
        slo_groups=("main",),
        target_rps=lambda settings: 2.0,
    )
)
'''


def test_a_profile_declares_itself_and_only_its_literal_facts_are_read(tmp_path: Path) -> None:
    (tmp_path / "probe_profile.py").write_text(PROFILE_FILE)
    found = profiles(tmp_path)
    assert list(found) == ["probe"]
    probe = found["probe"]
    assert probe.path == tmp_path / "probe_profile.py"
    assert probe.spec == ProfileSpec(
        "probe", duration="45s", needs_limits=("rpm",), rate_replaces_rpm=True, open_loop="rate"
    )
    assert probe.summary() == "sends a probe at the rate it is told."


def test_an_explicit_rate_stands_in_for_the_rpm_only_where_the_profile_says() -> None:
    assert explicit_rate(None, {"rate"}) and explicit_rate(2.0, ()) and not explicit_rate(0, ())
    steady = ProfileSpec("s", needs_limits=("rpm", "concurrent"), rate_replaces_rpm=True)
    assert steady.needed_limits(explicit_rate=True) == ("concurrent",)
    assert steady.needed_limits(explicit_rate=False) == ("rpm", "concurrent")
    burst = ProfileSpec("b", needs_limits=("rpm",))
    assert burst.needed_limits(explicit_rate=True) == ("rpm",)


def test_every_profile_file_declares_one_profile() -> None:
    found = profiles()
    files = sorted(path for path in PROFILE_DIR.glob("*.py") if path.name != "__init__.py")
    assert sorted(profile.path for profile in found.values()) == files
    assert all(profile.summary() for profile in found.values())
    assert {name for name, profile in found.items() if profile.spec.capacity} == {"ramp", "sweep"}
