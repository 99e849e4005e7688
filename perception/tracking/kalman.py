"""The tracker's constant-velocity Kalman filter, per track over x y vx vy in the global frame: predict,
update with a detection's centre and velocity, and a newborn track's covariance; the centre noise of a
detection grows with its box's length beyond a car's (``long_noise``)."""

from __future__ import annotations

import numpy as np

# a car's length (m): boxes up to it have ``pos_noise`` of centre noise, longer ones more with ``long_noise``
CAR_LENGTH = 4.6


def kalman_predict(cov: np.ndarray, dt: float, accel: float) -> np.ndarray:
    """Covariances (N, 4, 4) of x y vx vy moved on by ``dt`` s under constant velocity, white acceleration noise
    of ``accel`` m/s^2 (the means move with ``pred``)."""
    F = np.eye(4)
    F[0, 2] = F[1, 3] = dt
    q = accel ** 2 * np.array([[dt ** 3 / 3, dt ** 2 / 2], [dt ** 2 / 2, dt]])
    Q = np.kron(q, np.eye(2))
    return F @ cov @ F.T + Q


def centre_noise(lengths: np.ndarray, pos_noise: float, long_noise: float) -> np.ndarray:
    """(N,) noise (m) of each detection's centre: ``pos_noise`` for a box up to a car's length (4.6 m); with
    ``long_noise`` > 0, a longer box's grows by ``long_noise`` m per metre beyond it (a 12 m trailer's centre
    wanders with the part of it the sensors see)."""
    return pos_noise + long_noise * np.maximum(np.nan_to_num(lengths) - CAR_LENGTH, 0.0)


def kalman_update(mean: np.ndarray, cov: np.ndarray, z: np.ndarray, pos_noise, vel_noise: float):
    """Means (N, 4) and covariances (N, 4, 4) updated by measurements ``z`` (N, 4): the detection's centre (pos_noise
    m: one value or one per row) and velocity (vel_noise m/s; NaN: not measured, the position alone updates)."""
    known = np.isfinite(z[:, 2:4]).all(1)
    R = np.zeros((len(z), 4, 4))
    R[:, 0, 0] = R[:, 1, 1] = pos_noise ** 2
    R[:, 2, 2] = R[:, 3, 3] = np.where(known, vel_noise ** 2, 1e8)
    z = np.where(np.isfinite(z), z, mean)
    K = cov @ np.linalg.inv(cov + R)
    mean = mean + (K @ (z - mean)[..., None])[..., 0]
    cov = (np.eye(4) - K) @ cov
    return mean, 0.5 * (cov + cov.transpose(0, 2, 1))


def kalman_birth(data: np.ndarray, pos_noise, vel_noise: float) -> np.ndarray:
    """Covariances of newborn tracks: the detection's noise; an unknown velocity 10 m/s uncertain."""
    cov = np.zeros((len(data), 4, 4))
    cov[:, 0, 0] = cov[:, 1, 1] = pos_noise ** 2
    v = np.where(np.isfinite(data[:, 7:9]).all(1), vel_noise, 10.0) ** 2
    cov[:, 2, 2] = cov[:, 3, 3] = v
    return cov
