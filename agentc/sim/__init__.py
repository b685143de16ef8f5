"""`agentc simulate`: a discrete-event simulation (SimPy) of a placed plan under load.

plan.py loads a manifest (or compiles a .agent in memory), arrivals.py makes the request
stream, model.py runs it, report.py summarises it, perfetto.py writes the trace and
plots.py the pictures; cli.py is the command.
"""

# requests `plan --verify` (and --repair) simulates unless --requests says otherwise
DEFAULT_VERIFY_REQUESTS = 2000
