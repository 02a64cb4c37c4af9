#!/usr/bin/python3
"""Reference values for Tests/Autograd/OneCycleTests.cs: torch.optim.lr_scheduler.OneCycleLR's learning rate at
every step of a few schedules (cos annealing, two phases, momentum not cycled), read from the optimizer after each
scheduler.step() exactly as a training loop sees it.

Run: /usr/bin/python3 Tests/Fixtures/make_one_cycle.py   (Debian's python3-torch 1.13) -> one_cycle.json
"""
import json, os
import torch

cases = []
for total, max_lr, pct, div, final_div in [(100, 0.1, 0.3, 25.0, 1e4), (37, 0.4, 0.25, 10.0, 100.0), (10, 1.0, 0.5, 5.0, 1e3), (3, 0.1, 0.3, 25.0, 1e4)]:
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=max_lr, momentum=0.9, nesterov=True)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=max_lr, total_steps=total, pct_start=pct, div_factor=div,
                                                final_div_factor=final_div, cycle_momentum=False)
    lrs = [opt.param_groups[0]["lr"]]
    for _ in range(total - 1):
        opt.step()
        sched.step()
        lrs.append(opt.param_groups[0]["lr"])
    cases.append({"total": total, "max_lr": max_lr, "pct_start": pct, "div_factor": div, "final_div_factor": final_div, "lrs": lrs})

with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "one_cycle.json"), "w") as f:
    json.dump({"torch": torch.__version__, "cases": cases}, f, indent=1)
