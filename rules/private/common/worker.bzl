"""Actions run by persistent workers (python_tools/shiko/worker.py): the tools stay warm.

A Python tool pays ~0.1-0.2 s of interpreter start-up and imports per action, plus the
sandbox set-up; as a worker it pays them once per build server. Bazel runs such actions with
the `worker` strategy by default (`--strategy=ShikoLayer=sandboxed` etc. opts out; the tools
then read the same params file themselves).
"""

# The proto protocol needs no flag in Bazel 4.2.3 (JSON would need
# --experimental_worker_allow_json_protocol there).
WORKER_REQUIREMENTS = {
    "supports-workers": "1",
    "requires-worker-protocol": "proto",
}

def worker_args(ctx):
    """An Args whose arguments go in a params file (`@file`, one per line), as workers need."""
    args = ctx.actions.args()
    args.use_param_file("@%s", use_always = True)
    args.set_param_file_format("multiline")
    return args
