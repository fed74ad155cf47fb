"""Human motion: 3-D joint positions in millimetres at 25 frames per second.

Two sources:

- Human3.6M in its exponential-map text release (one file per subject, action and
  sub-action; 99 values a line at 50 fps): forward kinematics over the standard
  32-joint skeleton, global rotation and translation set to zero, every second frame
  kept. Features (T, 96).
- The climbing motion capture shipped in the holosoma-retargeting wheel (see
  `load_mocap` for its frame rate): 53 joints, root-centred, resampled to 25 fps.
  Features (T, 159).

Both raise ValueError with a short reason for a file that cannot be used.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torchaudio.functional

FRAME_RATE = 25

# --- Human3.6M -----------------------------------------------------------------------
H36M_FRAME_RATE = 50
# The published 32-joint Human3.6M skeleton (as used by Martinez et al. 2017 and the
# DVAE review): each joint's parent (-1 for the hips, the root) and its offset from the
# parent in the rest pose, in millimetres. Joints with a zero offset sit on their
# parent (duplicated joints of the original 32-joint layout).
H36M_PARENTS = np.array([-1, 0, 1, 2, 3, 4, 0, 6, 7, 8, 9, 0, 11, 12, 13, 14, 12,
                         16, 17, 18, 19, 20, 19, 22, 12, 24, 25, 26, 27, 28, 27, 30])
H36M_OFFSETS = np.array([
    [0, 0, 0], [-132.948591, 0, 0], [0, -442.894612, 0], [0, -454.206447, 0],
    [0, 0, 162.767078], [0, 0, 74.999437], [132.948826, 0, 0], [0, -442.894413, 0],
    [0, -454.206590, 0], [0, 0, 162.767426], [0, 0, 74.999948], [0, 0.1, 0],
    [0, 233.383263, 0], [0, 257.077681, 0], [0, 121.134938, 0], [0, 115.002227, 0],
    [0, 257.077681, 0], [0, 151.034226, 0], [0, 278.882773, 0], [0, 251.733451, 0],
    [0, 0, 0], [0, 0, 99.999627], [0, 100.000188, 0], [0, 0, 0],
    [0, 257.077681, 0], [0, 151.031437, 0], [0, 278.892924, 0], [0, 251.728680, 0],
    [0, 0, 0], [0, 0, 99.999888], [0, 137.499922, 0], [0, 0, 0],
])
H36M_VALUES_PER_FRAME = 99  # 33 triplets: global translation, then one rotation per joint


def load_h36m(path: str | Path) -> np.ndarray:
    """A Human3.6M exponential-map file as (T // 2 rounded up, 96) float32 joint positions in mm."""
    try:
        values = np.loadtxt(path, delimiter=",", ndmin=2, dtype=np.float64)
    except ValueError as error:
        raise ValueError(f"unreadable: {error}") from None
    if values.size == 0:
        raise ValueError("empty: no frames")
    if values.shape[1] != H36M_VALUES_PER_FRAME:
        raise ValueError(f"expected {H36M_VALUES_PER_FRAME} values a line, found {values.shape[1]}")
    if not np.isfinite(values).all():
        raise ValueError("non-finite values")
    values = values[:: H36M_FRAME_RATE // FRAME_RATE]
    return h36m_forward_kinematics(values).reshape(len(values), -1).astype(np.float32)


def h36m_forward_kinematics(values: np.ndarray) -> np.ndarray:
    """(T, 99) exponential-map frames -> (T, 32, 3) joint positions in mm.

    Triplet 0 is the global translation and triplet 1 the global (root) rotation; both
    are ignored, i.e. zeroed, so the hips stay at the origin facing one way. Triplet
    j + 1 is joint j's rotation relative to its parent. The convention is the one the
    data was written in: positions are row vectors, so a child sits at
    offset @ R_parent + p_parent, and rotations compose as R_j = R_local_j @ R_parent.
    """
    rotations = expmap_to_rotmat(values.reshape(len(values), -1, 3)[:, 1:])  # (T, 32, 3, 3)
    rotations[:, 0] = np.eye(3)
    global_rot = np.empty_like(rotations)
    positions = np.zeros((len(values), len(H36M_PARENTS), 3))
    for joint, parent in enumerate(H36M_PARENTS):  # parents come before their children
        if parent < 0:
            global_rot[:, joint] = rotations[:, joint]
            positions[:, joint] = H36M_OFFSETS[joint]
        else:
            positions[:, joint] = H36M_OFFSETS[joint] @ global_rot[:, parent] + positions[:, parent]
            global_rot[:, joint] = rotations[:, joint] @ global_rot[:, parent]
    return positions


def expmap_to_rotmat(r: np.ndarray) -> np.ndarray:
    """(..., 3) axis-angle vectors -> (..., 3, 3) rotation matrices (Rodrigues' formula)."""
    theta = np.linalg.norm(r, axis=-1, keepdims=True)
    axis = r / np.maximum(theta, 1e-12)  # a zero rotation gives a zero axis, hence R = I
    x, y, z = axis[..., 0], axis[..., 1], axis[..., 2]
    zero = np.zeros_like(x)
    k = np.stack([zero, -z, y, z, zero, -x, -y, x, zero], axis=-1).reshape(*r.shape[:-1], 3, 3)
    theta = theta[..., None]
    return np.eye(3) + np.sin(theta) * k + (1 - np.cos(theta)) * (k @ k)


# --- holosoma-retargeting climbing capture -------------------------------------------
MOCAP_FRAME_RATE = 120
MOCAP_JOINTS = 53  # Mixamo-style names, hips first (MOCAP_DEMO_JOINTS in the wheel)


def load_mocap(path: str | Path) -> np.ndarray:
    """A climbing capture (T, 53, 3) in metres, z up -> (T', 159) float32 mm at 25 fps.

    Frame rate. The files do not state it; it is 120 fps, for two independent reasons:
    (1) the wheel's own loader (examples/robot_retarget.py, task "climbing" and data
    format "mocap") keeps every 4th frame (``downsample = 4``) and its retargeter then
    saves and plays the result at ``fps=30`` (src/interaction_mesh_retargeter.py), so
    the source is 4 x 30 = 120 fps; (2) read at 120 fps the motion has human speeds:
    the hips move at a median 0.2-0.4 m/s with 99th percentiles of 0.9-1.4 m/s and the
    hands' 99th percentiles are 1.4-1.9 m/s, and the five takes last 19-25 s; at 30 fps
    those percentiles would be 0.2-0.35 m/s for the hips and 0.35-0.5 m/s for the
    hands, slower than a stroll, for a person stepping and climbing onto boxes.

    Root-centring. The hips' position is subtracted from every joint in every frame,
    so the features carry posture, not where the climber stands on the boxes, as
    Human3.6M's zeroed translation does. The hips' own three values are therefore
    zero. Heading is kept (no global rotation removed), as the climb has a direction.

    Resampling 120 -> 25 fps uses torchaudio's band-limited sinc resampler along time,
    which low-passes before decimating; the sequence is first extended by one second
    of its first and last frames so the filter sees no artificial jump to zero at the
    edges, and that padding is cut off again.
    """
    try:
        joints = np.load(path)
    except (ValueError, OSError, EOFError) as error:
        raise ValueError(f"unreadable: {error}") from None
    if joints.ndim != 3 or joints.shape[1:] != (MOCAP_JOINTS, 3):
        raise ValueError(f"expected an array (T, {MOCAP_JOINTS}, 3), found {joints.shape}")
    if len(joints) == 0:
        raise ValueError("empty: no frames")
    if not np.isfinite(joints).all():
        raise ValueError("non-finite values")
    centred = (joints - joints[:, :1]) * 1000.0  # metres -> mm, relative to the hips
    frames = torch.from_numpy(centred.reshape(len(joints), -1).T.astype(np.float64))  # (159, T)
    pad = MOCAP_FRAME_RATE  # one second
    padded = torch.cat([frames[:, :1].expand(-1, pad), frames, frames[:, -1:].expand(-1, pad)], dim=1)
    resampled = torchaudio.functional.resample(padded, MOCAP_FRAME_RATE, FRAME_RATE)
    length = -(-len(joints) * FRAME_RATE // MOCAP_FRAME_RATE)  # ceil
    return resampled[:, FRAME_RATE: FRAME_RATE + length].T.numpy().astype(np.float32)
