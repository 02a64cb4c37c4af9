#!/usr/bin/python3
"""Reference trajectories for Tests/Models/Reinforcement/CartPoleTests.cs.

Gymnasium is not installed here, so this script transcribes CartPole-v1's step function from Gymnasium's
gymnasium/envs/classic_control/cartpole.py (v0.29/1.0: euler integrator, float64 Python arithmetic, the state cast
to float32 for the observation, termination at |x| > 2.4 or |theta| > 12 degrees, reward 1 per step) and the
TimeLimit wrapper (truncated once 500 steps have been taken). Each case starts from a fixed state and applies a
fixed action pattern (or a lean-following controller, whose actions are recorded) until the episode ends or the given number of steps has been taken; it records the float64
state, the float32 observation, the reward and both flags after every step. Writes cartpole_trajectory.json.

Run: /usr/bin/python3 Tests/Fixtures/make_cartpole_trajectory.py
"""
import json, math, os
import numpy as np

gravity, masscart, masspole, length, force_mag, tau = 9.8, 1.0, 0.1, 0.5, 10.0, 0.02
total_mass = masspole + masscart
polemass_length = masspole * length
theta_threshold_radians = 12 * 2 * math.pi / 360
x_threshold = 2.4
max_episode_steps = 500

def step(state, action):
    x, x_dot, theta, theta_dot = state
    force = force_mag if action == 1 else -force_mag
    costheta = math.cos(theta)
    sintheta = math.sin(theta)
    temp = (force + polemass_length * theta_dot**2 * sintheta) / total_mass
    thetaacc = (gravity * sintheta - costheta * temp) / (length * (4.0 / 3.0 - masspole * costheta**2 / total_mass))
    xacc = temp - polemass_length * thetaacc * costheta / total_mass
    x = x + tau * x_dot
    x_dot = x_dot + tau * xacc
    theta = theta + tau * theta_dot
    theta_dot = theta_dot + tau * thetaacc
    state = (x, x_dot, theta, theta_dot)
    terminated = bool(x < -x_threshold or x > x_threshold or theta < -theta_threshold_radians or theta > theta_threshold_radians)
    return state, terminated

def lean_controller(state):
    # push towards the side the pole falls to: balances for longer than the time limit from a still start
    return 1 if 0.1 * state[0] + 0.5 * state[1] + state[2] + state[3] > 0 else 0

def run(name, start, actions, limit):
    state, out = tuple(start), []
    for t in range(limit):
        a = actions(state) if callable(actions) else actions[t % len(actions)]
        state, terminated = step(state, a)
        truncated = t + 1 >= max_episode_steps
        out.append({"action": a, "state": list(state), "observation": [float(v) for v in np.array(state, dtype=np.float32)],
                    "reward": 1.0, "terminated": terminated, "truncated": truncated})
        if terminated or truncated:
            break
    return {"name": name, "start": list(start), "steps": out}

cases = [
    run("push_right_until_fall", (0.01, -0.02, 0.03, 0.04), [1], 1000),          # theta falls past 12 degrees
    run("alternate", (-0.03, 0.01, -0.02, 0.015), [0, 1], 60),                   # stays up: 60 steps
    run("run_off_the_track", (2.3, 1.5, 0.0, 0.0), [1, 1, 0], 1000),             # x passes 2.4
    run("balanced_to_time_limit", (0.01, 0.0, -0.01, 0.0), lean_controller, 1000),  # truncated at 500
]
path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "cartpole_trajectory.json")
with open(path, "w") as f:
    json.dump({"source": "make_cartpole_trajectory.py (Gymnasium CartPole-v1 equations)", "cases": cases}, f)
print(path, [(c["name"], len(c["steps"]), c["steps"][-1]["terminated"], c["steps"][-1]["truncated"]) for c in cases])
