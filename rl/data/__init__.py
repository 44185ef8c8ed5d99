"""Offline RL data: the D4RL HDF5 layout, optional d4rl and Minari sources, trajectories and DT context windows."""

from rl.data.context import ContextDataset
from rl.data.layout import REQUIRED_KEYS, read_d4rl_hdf5, validate_layout, write_d4rl_hdf5
from rl.data.sources import load_dataset
from rl.data.trajectories import Trajectory, dataset_statistics, split_trajectories, state_statistics

__all__ = [
    "REQUIRED_KEYS",
    "ContextDataset",
    "Trajectory",
    "dataset_statistics",
    "load_dataset",
    "read_d4rl_hdf5",
    "split_trajectories",
    "state_statistics",
    "validate_layout",
    "write_d4rl_hdf5",
]
