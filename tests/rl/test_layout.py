"""The D4RL HDF5 layout: round trips, collected files, clear errors, trajectory splitting."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from rl.data import load_dataset, read_d4rl_hdf5, split_trajectories, write_d4rl_hdf5


def test_write_read_round_trip(tmp_path, make_arrays):
    arrays = make_arrays()
    path = write_d4rl_hdf5(tmp_path / "x.hdf5", arrays, {"env_id": "Hopper-v5", "seed": 4})
    loaded, attributes = read_d4rl_hdf5(path)
    assert set(loaded) == set(arrays)
    for key, value in arrays.items():
        np.testing.assert_array_equal(loaded[key], value)
        assert loaded[key].dtype == (bool if key in ("terminals", "timeouts") else np.float32)
    assert attributes == {"env_id": "Hopper-v5", "seed": 4}


def test_collected_file_has_the_d4rl_layout(tiny_hopper):
    with h5py.File(tiny_hopper) as handle:
        assert {"observations", "next_observations", "actions", "rewards", "terminals", "timeouts"} <= set(handle)
        n = len(handle["rewards"])
        assert handle["observations"].shape == (n, 11) and handle["actions"].shape == (n, 3)
        assert handle.attrs["env_id"] == "Hopper-v5"
    arrays, _ = read_d4rl_hdf5(tiny_hopper)
    trajectories = split_trajectories(arrays)
    assert len(trajectories) == 6
    assert not np.any(arrays["terminals"] & arrays["timeouts"])
    assert all(1 <= len(t) <= 40 for t in trajectories)
    assert sum(len(t) for t in trajectories) == n
    # within an episode, next_observations[i] is observations[i + 1]
    start = 0
    for t in trajectories:
        stop = start + len(t)
        np.testing.assert_array_equal(arrays["next_observations"][start:stop - 1], arrays["observations"][start + 1:stop])
        assert arrays["terminals"][stop - 1] or arrays["timeouts"][stop - 1]
        assert not (arrays["terminals"][start:stop - 1] | arrays["timeouts"][start:stop - 1]).any()
        start = stop
    assert np.all(np.abs(arrays["actions"]) <= 1.0)


def test_split_at_terminals_and_timeouts_keeps_the_cut_tail(make_arrays):
    trajectories = split_trajectories(make_arrays((3, 4, 2)))
    assert [len(t) for t in trajectories] == [3, 4, 2]
    assert [t.terminal for t in trajectories] == [True, False, False]


def test_column_rewards_are_accepted(tmp_path, make_arrays):
    arrays = make_arrays()
    arrays["rewards"] = arrays["rewards"][:, None]
    loaded, _ = read_d4rl_hdf5(write_d4rl_hdf5(tmp_path / "c.hdf5", arrays))
    assert loaded["rewards"].shape == (8,)


def _write_raw(path, arrays):
    with h5py.File(path, "w") as handle:
        for key, value in arrays.items():
            handle.create_dataset(key, data=value)
    return path


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda a: a.pop("timeouts"), "missing \\['timeouts'\\]"),
        (lambda a: a.update(actions=a["actions"][:, 0]), "'actions' must be 2-d"),
        (lambda a: a.update(rewards=a["rewards"][:-1]), "same length"),
        (lambda a: a.update(observations=np.full_like(a["observations"], np.nan)), "NaN"),
    ],
)
def test_wrong_layout_is_refused_with_a_clear_error(tmp_path, edit, message, make_arrays):
    arrays = make_arrays()
    edit(arrays)
    with pytest.raises(ValueError, match=message):
        read_d4rl_hdf5(_write_raw(tmp_path / "bad.hdf5", arrays))


def test_group_instead_of_dataset_and_non_hdf5_files(tmp_path, make_arrays):
    arrays = make_arrays()
    path = _write_raw(tmp_path / "g.hdf5", {k: v for k, v in arrays.items() if k != "rewards"})
    with h5py.File(path, "a") as handle:
        handle.create_group("rewards")
    with pytest.raises(ValueError, match="'rewards' must be an HDF5 dataset"):
        read_d4rl_hdf5(path)
    text = tmp_path / "notes.hdf5"
    text.write_text("not hdf5")
    with pytest.raises(ValueError, match="not a readable HDF5"):
        read_d4rl_hdf5(text)
    with pytest.raises(FileNotFoundError, match="python -m rl collect"):
        load_dataset(str(tmp_path / "missing.hdf5"))


def test_optional_sources_fail_clearly_when_missing():
    try:
        import d4rl  # noqa: F401

        has_d4rl = True
    except Exception:
        has_d4rl = False
    if not has_d4rl:
        with pytest.raises(RuntimeError, match="d4rl"):
            load_dataset("d4rl:hopper-medium-v2")
    try:
        import minari  # noqa: F401
    except Exception:
        with pytest.raises(RuntimeError, match="pip install minari"):
            load_dataset("minari:mujoco/hopper/medium-v0")
