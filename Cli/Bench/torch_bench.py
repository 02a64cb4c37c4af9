#!/usr/bin/python3
"""PyTorch side of `attncore bench --vs torch`.

A long-lived child process driven by one JSON command per stdin line, so that the C# side can interleave
batches of AttnCore runs with batches of PyTorch runs on the same machine:
  {"cmd": "setup", "op": "gemm", "m": 1024, "n": 1024, "k": 1024, "threads": 2}  -> {"ok": true, "torch": "1.13.1", "config": {..}}
  {"cmd": "run", "reps": 5}                                                      -> {"times_ms": [..]}
  {"cmd": "quit"}
The shapes and the computations mirror Cli/Commands/BenchCommand.cs. The environment (OpenBLAS core, allocator,
OpenMP) is set by the C# side (TorchBridge.CreateStartInfo); "config" reports what this process actually got.
"""
import ctypes, json, math, os, sys, time

try:
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
except Exception as e:  # reported to the C# side, which tells the user how to install PyTorch
    print(json.dumps({"ok": False, "error": f"cannot import torch: {e}"}), flush=True)
    sys.exit(3)


def make_gpt(vocab, block, layers, heads, dim):
    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.ln1 = nn.LayerNorm(dim)
            self.qkv = nn.Linear(dim, 3 * dim, bias=False)
            self.proj = nn.Linear(dim, dim, bias=False)
            self.ln2 = nn.LayerNorm(dim)
            self.fc = nn.Linear(dim, 4 * dim, bias=False)
            self.fc_proj = nn.Linear(4 * dim, dim, bias=False)

        def forward(self, x):
            B, T, C = x.shape
            q, k, v = self.qkv(self.ln1(x)).split(C, dim=2)
            q = q.view(B, T, heads, C // heads).transpose(1, 2)
            k = k.view(B, T, heads, C // heads).transpose(1, 2)
            v = v.view(B, T, heads, C // heads).transpose(1, 2)
            att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(C // heads))
            att = att.masked_fill(self.mask[:, :, :T, :T] == 0, float("-inf"))
            y = F.softmax(att, dim=-1) @ v
            x = x + self.proj(y.transpose(1, 2).contiguous().view(B, T, C))
            return x + self.fc_proj(F.gelu(self.fc(self.ln2(x))))

    class GPT(nn.Module):
        def __init__(self):
            super().__init__()
            self.wte = nn.Embedding(vocab, dim)
            self.wpe = nn.Embedding(block, dim)
            self.blocks = nn.ModuleList([Block() for _ in range(layers)])
            mask = torch.tril(torch.ones(block, block)).view(1, 1, block, block)
            for b in self.blocks:
                b.register_buffer("mask", mask)
            self.ln_f = nn.LayerNorm(dim)

        def forward(self, idx, targets):
            T = idx.shape[1]
            x = self.wte(idx) + self.wpe(torch.arange(T))
            for b in self.blocks:
                x = b(x)
            logits = self.ln_f(x) @ self.wte.weight.t()
            return F.cross_entropy(logits.view(-1, vocab), targets.view(-1))

    return GPT()


def loaded_libraries():
    try:
        with open("/proc/self/maps") as f:
            return sorted({line.split()[-1] for line in f if line.rstrip().split()[-1].startswith("/")})
    except OSError:
        return []


def openblas_info(libraries):
    """The OpenBLAS that PyTorch loaded: its core (the kernel set it dispatched to), threads and library."""
    for path in libraries:
        if "blas" not in os.path.basename(path):
            continue
        try:
            lib = ctypes.CDLL(path)
            corename = lib.openblas_get_corename
        except (OSError, AttributeError):
            continue
        corename.restype = ctypes.c_char_p
        lib.openblas_get_num_threads.restype = ctypes.c_int
        return corename().decode(), str(lib.openblas_get_num_threads()), path
    return "none (no OpenBLAS loaded)", "", ""


def reference_config():
    """What this process runs with, as strings: printed by `attncore bench` and written to its JSON."""
    libraries = loaded_libraries()
    core, blas_threads, blas_library = openblas_info(libraries)
    if any("libjemalloc" in os.path.basename(p) for p in libraries):
        allocator = f"jemalloc (LD_PRELOAD, MALLOC_CONF={os.environ.get('MALLOC_CONF', '')})"
    else:
        tuned = [f"{k}={os.environ[k]}" for k in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_") if k in os.environ]
        allocator = f"glibc malloc ({', '.join(tuned)})" if tuned else "glibc malloc (defaults)"
    unset = "(unset)"
    return {
        "torch": torch.__version__,
        "blas_core": core,
        "blas_threads": blas_threads,
        "blas_library": blas_library,
        "allocator": allocator,
        "threads": str(torch.get_num_threads()),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS", unset),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", unset),
        "openblas_coretype": os.environ.get("OPENBLAS_CORETYPE", unset),
        "aten_cpu_capability": os.environ.get("ATEN_CPU_CAPABILITY", unset),
        "openblas_l2_size": os.environ.get("OPENBLAS_L2_SIZE", unset),
        "openblas_thread_timeout": os.environ.get("OPENBLAS_THREAD_TIMEOUT", unset),
    }


def setup(c):
    torch.set_num_threads(int(c.get("threads", 1)))
    torch.manual_seed(0)
    op = c["op"]
    if op == "gemm":
        layout = c.get("layout", "nn")
        a = torch.randn(c["k"], c["m"]).t() if layout[0] == "t" else torch.randn(c["m"], c["k"])
        b = torch.randn(c["n"], c["k"]).t() if layout[1] == "t" else torch.randn(c["k"], c["n"])
        return lambda: torch.mm(a, b)
    if op == "softmax":
        x = torch.randn(c["rows"], c["cols"])
        return lambda: torch.softmax(x, -1)
    if op == "layernorm":
        x = torch.randn(c["rows"], c["cols"])
        w, bias = torch.ones(c["cols"]), torch.zeros(c["cols"])
        return lambda: F.layer_norm(x, [c["cols"]], w, bias, 1e-5)
    if op == "attention":
        B, H, L, D = c["b"], c["h"], c["l"], c["d"]
        backward = c.get("backward", False)
        q, k, v = (torch.randn(B, H, L, D, requires_grad=backward) for _ in range(3))
        mask = torch.triu(torch.ones(L, L, dtype=torch.bool), 1) if c.get("causal") else None
        scale = 1.0 / math.sqrt(D)

        def naive():
            s = (q @ k.transpose(-1, -2)) * scale
            if mask is not None:
                s = s.masked_fill(mask, float("-inf"))
            o = torch.softmax(s, -1) @ v
            if backward:
                # Fresh gradients each call, as AttnCore's side drops them: accumulating into .grad would add a pass.
                q.grad = k.grad = v.grad = None
                o.backward(torch.ones_like(o))
            return o

        if not backward:
            def fwd():
                with torch.no_grad():
                    return naive()
            return fwd
        return naive
    if op == "gpt-step":
        model = make_gpt(c["vocab"], c["block"], c["layers"], c["heads"], c["dim"])
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.99), weight_decay=0.1)
        idx = torch.randint(0, c["vocab"], (c["batch"], c["block"]))
        tgt = torch.randint(0, c["vocab"], (c["batch"], c["block"]))

        def step():
            opt.zero_grad(set_to_none=True)
            loss = model(idx, tgt)
            loss.backward()
            opt.step()
        return step
    if op == "resnet-step":  # vision-models: the model lives in torch_resnet.py beside this script
        from torch_resnet import make_resnet_step
        return make_resnet_step(c)
    if op == "sasrec-step":
        import torch_sasrec  # beside this script (Cli/Bench/torch_sasrec.py)
        return torch_sasrec.make_step(c)
    if op == "forecast-step":
        from torch_forecast import forecast_step  # Cli/Bench/torch_forecast.py, beside this script
        return forecast_step(c)
    raise ValueError(f"unknown op {op}")


def main():
    fn = None
    for line in sys.stdin:
        c = json.loads(line)
        if c["cmd"] == "quit":
            break
        try:
            if c["cmd"] == "setup":
                fn = setup(c)
                fn()  # warm-up
                print(json.dumps({"ok": True, "torch": torch.__version__, "threads": torch.get_num_threads(), "config": reference_config()}), flush=True)
            elif c["cmd"] == "run":
                times = []
                for _ in range(int(c["reps"])):
                    t = time.perf_counter()
                    fn()
                    times.append((time.perf_counter() - t) * 1e3)
                print(json.dumps({"times_ms": times}), flush=True)
        except Exception as e:
            print(json.dumps({"ok": False, "error": str(e)}), flush=True)


if __name__ == "__main__":
    main()
