"""The built-in demo's miniature raw source: determinism, atomic generation, C3D round trip,
and the physiological plausibility and causality of the simulated gait."""

from __future__ import annotations

import json
import re
from pathlib import Path

import ezc3d
import numpy as np
import pytest
import yaml

import builder.demo as demo
from builder.conventions import JOINTS, MUSCLES
from builder.datasets.c3d.adapter import C3DOptions
from builder.datasets.miniatures import miniature_sources
from builder.synthetic import c3d_writer
from builder.synthetic import gait_model as gm

from helpers import ADD, ANKLE, FLEX, HIP, KNEE, MINIATURE_MAX_BYTES, REPO

CATALOG = REPO / "catalogs" / "demo.yaml"


@pytest.fixture(scope="module")
def cache(demo_root: Path) -> Path:
    """The cache folder of the session's one full demo generation (conftest ``demo_root``),
    shared by the tests that read files."""
    return demo_root.parent.parent


def _subset(cache_dir: Path) -> list[demo.DemoTrial]:
    """One trial per subject (one per style), for tests that regenerate."""
    trials = demo.demo_trials(cache_dir)
    return [next(t for t in trials if t.subject == s.subject_id) for s in demo.SUBJECTS]


def _neutral_subject() -> gm.SubjectParams:
    zeros = tuple(tuple((0.0, 0.0, 0.0) for _ in JOINTS) for _ in "LR")
    ones = tuple(tuple(1.0 for _ in gm.DEMO_MUSCLES) for _ in "LR")
    return gm.SubjectParams("X", 1.75, 70.0, zeros, ones)


def _truth(speed: float = 1.2, incline: float = 0.0) -> gm.SimulatedTrial:
    activity = "walk" if incline == 0 else ("ramp_ascent" if incline > 0 else "ramp_descent")
    return gm.simulate_trial(
        subject=_neutral_subject(),
        activity=activity,
        speed_mps=speed,
        incline_deg=incline,
        n_strides=6,
        seed=1,
        variability=False,
    )


def _cycle(trial: gm.SimulatedTrial, side: str = "L") -> tuple[np.ndarray, np.ndarray]:
    """Mask of one whole stride (phase 2..3) and its phase in percent."""
    phase = trial.phase[side]
    mask = (phase >= 2.0) & (phase < 3.0)
    return mask, 100.0 * (phase[mask] - 2.0)


# --- the cache folder ------------------------------------------------------------------------


def test_full_generation_is_complete_and_small(cache: Path) -> None:
    root = demo.demo_root(cache)
    trials = demo.demo_trials(cache)
    assert root == cache / "demo" / f"v{demo.DEMO_VERSION}"
    assert len(trials) == 40 and all(t.path.is_file() for t in trials)
    assert sorted(p.relative_to(root).as_posix() for p in root.rglob("*.c3d")) == sorted(
        t.relative_path for t in trials
    )
    marker = json.loads((root / ".complete").read_text())
    assert marker["version"] == demo.DEMO_VERSION
    # The marker lists the 40 C3D trials and every file of the 14 miniature datasets.
    miniature_files = sorted(
        p.relative_to(root).as_posix() for p in (root / "datasets").rglob("*") if p.is_file()
    )
    assert sorted(marker["files"]) == sorted([t.relative_path for t in trials] + miniature_files)
    assert marker["miniatures"] == miniature_sources() and len(miniature_sources()) == 14
    assert {p.name for p in (root / "datasets").iterdir()} == set(miniature_sources())
    assert sum(t.path.stat().st_size for t in trials) < 100e6
    for source in miniature_sources():  # each miniature stays small
        size = sum(p.stat().st_size for p in (root / "datasets" / source).rglob("*") if p.is_file())
        assert size < MINIATURE_MAX_BYTES, (source, size)
    assert not list(root.parent.glob(".staging-*"))  # no temporary files left behind
    assert {t.path.name for t in trials if t.subject == "S01"} >= {
        "walk_v0.80_i+0_t01.c3d",
        "rampup_v1.00_i+6_t02.c3d",
        "rampdown_v1.00_i-6_t01.c3d",
    }


def test_generation_is_deterministic(cache: Path, tmp_path: Path, monkeypatch) -> None:
    subset = _subset(tmp_path)
    monkeypatch.setattr(demo, "demo_trials", lambda cache_dir=None: subset)
    demo.ensure_demo_sources(tmp_path)
    for trial in subset:
        reference = demo.demo_root(cache) / trial.relative_path
        assert trial.path.read_bytes() == reference.read_bytes(), trial.relative_path


def test_incomplete_folder_is_regenerated(tmp_path: Path, monkeypatch) -> None:
    subset = _subset(tmp_path)[:2]
    monkeypatch.setattr(demo, "demo_trials", lambda cache_dir=None: subset)
    root = demo.ensure_demo_sources(tmp_path)
    good = {t.path: t.path.read_bytes() for t in subset}

    # A generation killed half-way: no marker, one file missing, one truncated.
    (root / ".complete").unlink()
    subset[0].path.unlink()
    subset[1].path.write_bytes(good[subset[1].path][:1000])
    demo.ensure_demo_sources(tmp_path)
    assert (root / ".complete").is_file()
    assert {t.path: t.path.read_bytes() for t in subset} == good

    # A file truncated after the marker was written is noticed too.
    subset[0].path.write_bytes(good[subset[0].path][:1000])
    demo.ensure_demo_sources(tmp_path)
    assert {t.path: t.path.read_bytes() for t in subset} == good

    # A complete folder is left alone: nothing is simulated again.
    def fail(*args, **kwargs):
        raise AssertionError("regenerated a complete folder")

    monkeypatch.setattr(demo, "simulate_trial", fail)
    assert demo.ensure_demo_sources(tmp_path) == root


def test_failed_generation_leaves_no_partial_files(tmp_path: Path, monkeypatch) -> None:
    subset = _subset(tmp_path)
    monkeypatch.setattr(demo, "demo_trials", lambda cache_dir=None: subset)
    real_write = c3d_writer.write_c3d

    def write_then_die(trial, path, *, style):
        if trial.subject_id == "S03":
            Path(path).write_bytes(b"half a file")
            raise KeyboardInterrupt
        real_write(trial, path, style=style)

    monkeypatch.setattr(demo, "write_c3d", write_then_die)
    with pytest.raises(KeyboardInterrupt):
        demo.ensure_demo_sources(tmp_path)
    root = demo.demo_root(tmp_path)
    assert not (root / ".complete").exists()
    assert not list(root.parent.glob(".staging-*"))
    for path in root.rglob("*.c3d"):  # whatever got there is whole
        assert ezc3d.c3d(str(path))["parameters"]["POINT"]["RATE"]["value"][0] == 100


def test_default_cache_dir(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("BUILDER_CACHE_DIR", str(tmp_path / "a"))
    assert demo.default_cache_dir() == tmp_path / "a"
    monkeypatch.delenv("BUILDER_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert demo.default_cache_dir() == tmp_path / "xdg" / "gait-builder"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert demo.default_cache_dir() == Path.home() / ".cache" / "gait-builder"
    assert demo.demo_root(tmp_path) == tmp_path / "demo" / f"v{demo.DEMO_VERSION}"


# --- C3D round trip ---------------------------------------------------------------------------


def _events(c3d: ezc3d.c3d) -> list[tuple[float, str, str]]:
    event = c3d["parameters"]["EVENT"]
    times = event["TIMES"]["value"]
    seconds = 60.0 * times[0] + times[1]
    return list(zip(seconds, event["CONTEXTS"]["value"], event["LABELS"]["value"], strict=True))


@pytest.mark.parametrize("subject", ["S01", "S02", "S03", "S04"])
def test_c3d_round_trip(cache: Path, subject: str) -> None:
    trial = next(t for t in demo.demo_trials(cache) if t.subject == subject and t.speed_mps == 1.2)
    truth = demo.simulate_demo_trial(trial)
    c3d = ezc3d.c3d(str(trial.path))
    header, params = c3d["header"], c3d["parameters"]
    prefix = f"{subject}:" if subject == "S02" else ""

    assert header["points"]["frame_rate"] == 100 and header["analogs"]["frame_rate"] == 2000
    assert header["points"]["first_frame"] == trial.first_frame
    assert header["analogs"]["first_frame"] == 20 * trial.first_frame
    assert (trial.first_frame > 0) == (subject == "S03")
    assert params["TRIAL"]["ACTUAL_START_FIELD"]["value"][0] == trial.first_frame + 1
    assert params["PROCESSING"]["Bodymass"]["value"][0] == truth.body_mass_kg

    labels = params["POINT"]["LABELS"]["value"]
    assert params["POINT"]["UNITS"]["value"] == ["mm"]
    assert params["POINT"]["ANGLE_UNITS"]["value"] == ["deg"]
    assert params["POINT"]["MOMENT_UNITS"]["value"] == ["Nmm"]
    assert params["SUBJECTS"]["USES_PREFIXES"]["value"][0] == int(bool(prefix))
    if prefix:
        assert params["SUBJECTS"]["LABEL_PREFIXES"]["value"] == [prefix]
    points = c3d["data"]["points"]
    for side in "LR":
        for j, joint in enumerate(("Hip", "Knee", "Ankle")):
            angle = points[:3, labels.index(f"{prefix}{side}{joint}Angles")].T
            moment = points[:3, labels.index(f"{prefix}{side}{joint}Moment")].T
            # X flexion, Y adduction, Z rotation; moments external, N·mm/kg.
            np.testing.assert_allclose(angle, truth.kinematics[side][:, j][:, [2, 0, 1]], atol=1e-3)
            np.testing.assert_allclose(
                -moment / 1000, truth.kinetics[side][:, j][:, [2, 0, 1]], atol=1e-5
            )
    np.testing.assert_allclose(
        points[:3, labels.index(f"{prefix}LHEE")].T, truth.markers["LHEE"], atol=1e-3
    )

    analog_labels = params["ANALOG"]["LABELS"]["value"]
    assert analog_labels[:2] == ["L_VL", "L_RF"] and "R_SOL" in analog_labels
    assert params["ANALOG"]["DESCRIPTIONS"]["value"][3] == "Left Tibialis Anterior"
    assert set(params["ANALOG"]["UNITS"]["value"]) == {"V"}
    analogs = c3d["data"]["analogs"][0]
    np.testing.assert_allclose(
        analogs[analog_labels.index("R_SOL")], truth.emg["R"][:, 8], atol=1e-9
    )

    events = _events(c3d)
    start, end = truth.start_s, truth.start_s + (truth.n_frames - 1) / 100
    assert all(start <= t <= end for t, _, _ in events)
    expected = {
        "S01": {("Left", "Foot Strike"), ("Right", "Foot Strike"), ("Left", "Foot Off")},
        "S02": {("Left", "Foot Strike"), ("Right", "Foot Off")},
        "S03": {("Left", "foot strike"), ("Right", "foot off")},
        "S04": {("LHS", ""), ("RHS", ""), ("LTO", ""), ("RTO", "")},
    }[subject]
    assert expected <= {(c, label) for _, c, label in events}
    for side, name in (("L", "Left"), ("R", "Right")):
        for kind, truth_times in (("strike", truth.heel_strikes), ("off", truth.toe_offs)):
            code = f"{side}{'HS' if kind == 'strike' else 'TO'}"
            found = [
                t
                for t, context, label in events
                if (context, label.lower()) in {(name, f"foot {kind}"), (code, "")}
            ]
            np.testing.assert_allclose(sorted(found), truth_times[side], atol=1e-4)
        assert len(truth.heel_strikes[side]) == demo.N_STRIDES + 1


# --- the catalogue -----------------------------------------------------------------------------


def test_catalog_matches_the_files(cache: Path) -> None:
    entry = yaml.safe_load(CATALOG.read_text())["sources"]["demo"]
    assert entry["driver"] == "c3d"
    args = dict(entry["args"])
    urlpath = args.pop("urlpath")
    C3DOptions.model_validate(args)  # the adapter accepts every option
    channels = args["emg"]["channels"]
    assert set(channels) == set(gm.DEMO_MUSCLES) and set(channels) <= set(MUSCLES)

    root = demo.demo_root(cache)
    pattern = re.escape(urlpath.replace("{{ demo_root }}", str(root)))
    pattern = re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+?)", pattern) + "$"
    activities = entry["metadata"]["activity_map"]
    for trial in demo.demo_trials(cache):
        fields = re.match(pattern, trial.path.as_posix()).groupdict()
        assert fields["subject"] == trial.subject and fields["trial"] == trial.trial
        assert activities[fields["activity"]] == trial.activity
        assert float(fields["speed_mps"]) == trial.speed_mps
        assert float(fields["incline_deg"]) == trial.incline_deg

    labels = ezc3d.c3d(str(demo.demo_trials(cache)[0].path), extract_forceplat_data=False)
    in_file = set(labels["parameters"]["ANALOG"]["LABELS"]["value"])
    assert {c for sides in channels.values() for c in sides.values()} == in_file


# --- the gait model -------------------------------------------------------------------------


@pytest.mark.parametrize("speed", [0.8, 1.2, 1.6])
def test_kinematics_and_moments_are_plausible(speed: float) -> None:
    trial = _truth(speed)
    mask, pct = _cycle(trial)
    angles, moments = trial.kinematics["L"][mask], trial.kinetics["L"][mask]
    stance = gm.stance_fraction(speed)
    swing = pct > 100 * stance

    knee = angles[:, KNEE, FLEX]
    assert 50 <= knee[swing].max() <= 70
    assert 60 <= pct[np.argmax(knee)] <= 80
    assert abs(knee[0] - 5) < 4 and 12 <= knee[pct < 25].max() <= 25
    hip = angles[:, HIP, FLEX]
    assert 25 <= hip[0] <= 36 and -16 <= hip.min() <= -5 and 45 <= pct[np.argmin(hip)] <= 60
    ankle = angles[:, ANKLE, FLEX]
    assert -25 <= ankle.min() <= -14 and 55 <= pct[np.argmin(ankle)] <= 72
    assert 8 <= ankle[pct < 55].max() <= 15

    hip_m = moments[:, HIP, FLEX]
    assert -1.3 <= hip_m[(pct > 3) & (pct < 20)].min() <= -0.6  # extensor at loading
    assert 0.6 <= hip_m[(pct > 40) & (pct < 60)].max() <= 1.3  # flexor in late stance
    assert -0.8 <= moments[(pct > 5) & (pct < 25), KNEE, FLEX].min() <= -0.35  # knee extensor
    ankle_m = moments[:, ANKLE, FLEX]
    assert -1.8 <= ankle_m.min() <= -1.1 and 35 <= pct[np.argmin(ankle_m)] <= 55
    assert -1.1 <= moments[:, HIP, ADD].min() <= -0.7  # hip abductor in stance
    assert -0.5 <= moments[:, KNEE, ADD].min() <= -0.3
    assert np.abs(moments[swing]).max() < 0.6  # swing moments are small


def test_activations_follow_phase_and_moments() -> None:
    trial = _truth()
    mask, pct = _cycle(trial)
    act = trial.activations["L"][::20][mask]
    m = {name: act[:, i] for i, name in enumerate(trial.muscles)}
    stance = 100 * gm.stance_fraction(1.2)
    assert 20 <= pct[np.argmax(m["soleus"])] <= stance  # plantarflexors in stance
    assert m["soleus"].max() > 0.5 and m["soleus"][pct > stance + 5].max() < 0.1
    ta_swing = m["tibialis_anterior"][pct > stance].mean()
    ta_midstance = m["tibialis_anterior"][(pct > 20) & (pct < 50)].mean()
    assert ta_swing > 2 * ta_midstance  # TA lifts the foot in swing
    assert pct[np.argmax(m["vastus_lateralis"])] < 25  # quadriceps at loading
    assert pct[np.argmax(m["biceps_femoris"])] > 80  # hamstrings brake the swing
    assert pct[np.argmax(m["gluteus_medius"])] < 30
    assert (act >= 0).all() and (act <= 1).all() and act.min() > 0.01  # tonic baseline

    # Faster walking recruits more.
    fast = _truth(1.6).activations["L"]
    assert fast.max(axis=0)[8] > trial.activations["L"].max(axis=0)[8]


def test_moments_and_activations_follow_the_kinematics() -> None:
    trial = _truth()
    phase, angles = trial.phase["L"], trial.kinematics["L"]
    moments = gm.joint_moments(angles, phase, 100.0, speed_mps=1.2)
    np.testing.assert_allclose(moments, trial.kinetics["L"])

    # More knee flexion and dorsiflexion through stance: more extensor / plantarflexor moment.
    bent = angles.copy()
    bent[:, KNEE, FLEX] += 5.0
    bent[:, ANKLE, FLEX] += 3.0
    perturbed = gm.joint_moments(bent, phase, 100.0, speed_mps=1.2)
    frac = np.mod(phase, 1.0)
    loading = (frac > 0.1) & (frac < 0.3)
    assert (perturbed[loading, KNEE, FLEX] < moments[loading, KNEE, FLEX] - 0.1).all()
    assert (perturbed[loading, ANKLE, FLEX] < moments[loading, ANKLE, FLEX] - 0.1).all()
    swing = frac > 0.7
    np.testing.assert_allclose(perturbed[swing], moments[swing], atol=1e-6)  # no load in swing

    # A larger plantarflexor moment drives the plantarflexors harder.
    acts = gm.muscle_activations(phase, angles, moments, 100.0, speed_mps=1.2)
    stronger = gm.muscle_activations(phase, bent, perturbed, 100.0, speed_mps=1.2)
    soleus = gm.DEMO_MUSCLES.index("soleus")
    assert stronger[:, soleus].max() > acts[:, soleus].max() + 0.02


def test_incline_changes_kinematics_and_moments() -> None:
    at_heel_strike = [
        gm.joint_angles(np.zeros(1), speed_mps=1.0, incline_deg=i)[0] for i in (-6, -3, 0, 3, 6)
    ]
    hip = [a[HIP, FLEX] for a in at_heel_strike]
    assert np.all(np.diff(hip) > 0)  # steeper incline: more hip flexion at heel strike
    assert at_heel_strike[-1][KNEE, FLEX] > at_heel_strike[2][KNEE, FLEX] + 5

    level, up = _truth(1.0, 0.0), _truth(1.0, 6.0)
    assert up.kinetics["L"][:, KNEE, FLEX].min() < level.kinetics["L"][:, KNEE, FLEX].min() - 0.2
    assert up.kinetics["L"][:, ANKLE, FLEX].min() < level.kinetics["L"][:, ANKLE, FLEX].min()
    assert (
        _truth(1.6).kinetics["L"][:, HIP, FLEX].max()
        > _truth(0.8).kinetics["L"][:, HIP, FLEX].max()
    )


def test_events_alternate_and_match_the_markers() -> None:
    subject = gm.SubjectParams.generate("S09", 1.7, 65.0, seed=3)
    trial = gm.simulate_trial(
        subject=subject,
        activity="walk",
        speed_mps=1.2,
        incline_deg=0.0,
        n_strides=8,
        seed=7,
        first_frame=250,
    )
    hs, to = trial.heel_strikes, trial.toe_offs
    assert len(hs["L"]) == len(hs["R"]) == 9
    both = np.concatenate([hs["L"], hs["R"]])
    sides = np.array(["L"] * len(hs["L"]) + ["R"] * len(hs["R"]))[np.argsort(both)]
    assert (sides[1:] != sides[:-1]).all()  # strictly alternating
    stride = np.diff(hs["L"])
    assert np.all(np.abs(stride / stride.mean() - 1) <= 0.05)  # ±3 % jitter, smoothed
    # The right heel strikes half a cycle after the left; each toe off follows its heel strike.
    for t_l, t_r, t_next in zip(hs["L"], hs["R"][hs["R"] > hs["L"][0]], hs["L"][1:], strict=False):
        assert abs((t_r - t_l) / (t_next - t_l) - 0.5) < 0.03
    for side in "LR":
        following = np.searchsorted(to[side], hs[side])
        gaps = to[side][following[following < to[side].size]] - hs[side][following < to[side].size]
        assert np.all((gaps > 0.55) & (gaps < 0.8))
    assert trial.times()[0] == 2.5 and hs["L"].min() >= 2.5

    # Marker-based detection (Zeni et al. 2008: heel most forward of the sacrum at heel strike,
    # toe most backward at toe off) finds the true events within a few frames.
    times, sacrum = trial.times(), trial.markers["SACR"][:, 0]
    for side in "LR":
        heel = trial.markers[f"{side}HEE"][:, 0] - sacrum
        toe = trial.markers[f"{side}TOE"][:, 0] - sacrum
        for signal, truth in ((heel, hs[side]), (-toe, to[side])):
            peaks = times[1:-1][(signal[1:-1] > signal[:-2]) & (signal[1:-1] >= signal[2:])]
            inner = truth[(truth > times[5]) & (truth < times[-5])]
            error = np.abs(peaks[:, None] - inner[None, :]).min(axis=0)
            assert error.max() < 0.06
