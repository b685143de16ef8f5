"""What the cost and placement passes share: the catalog, the cluster and the models of
a module, built once per compile and cached on the Compilation."""

from __future__ import annotations

import dataclasses

from agentc.passes._ir import attrs_of, get, top_ops


def catalog_and_cluster(comp):
    from agentc.catalog import load_catalog, load_cluster

    data = comp.data if comp is not None else {}
    if "cluster" not in data:
        from agentc.driver import catalog as compile_catalog

        opts = comp.options if comp is not None else None
        catalog = compile_catalog(comp) if comp is not None else load_catalog()
        cluster = load_cluster(opts.cluster if opts else None, catalog)
        if opts is not None and opts.pricing:
            cluster = dataclasses.replace(cluster, pricing=opts.pricing)
        data["catalog"], data["cluster"] = catalog, cluster
        if comp is not None:
            extra = data.setdefault("extra_inputs", [])
            extra.extend(f for f in getattr(cluster, "files", ()) if f not in extra)
            extra.extend(f for f in getattr(catalog, "files", ()) if f not in extra)
    return data["catalog"], data["cluster"]


def models_of(module) -> dict:
    """sym_name -> ModelSpec rebuilt from the module's agent.model ops."""
    from agentc.catalog import ModelSpec, model_from_decl

    fields = {f.name: f.type for f in dataclasses.fields(ModelSpec)}
    out = {}
    for op in top_ops(module):
        if op.name != "agent.model":
            continue
        a = attrs_of(op)
        name = a.pop("sym_name")
        kw = {}
        for k, v in a.items():
            if k not in fields or k in ("name", "source"):
                continue
            t = str(fields[k])
            kw[k] = float(v) if "float" in t and not isinstance(v, bool) else v
        out[name] = model_from_decl(None, name=name, **kw)
    return out


def entry_graph(module):
    graphs = [op for op in top_ops(module) if op.name == "agent.graph"]
    for g in graphs:
        if "entry" in g.attributes:
            return g
    return graphs[-1] if graphs else None


def model_for(op, models):
    name = get(op, "model")
    return models.get(name) if name else None
