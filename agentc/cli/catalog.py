"""`agentc devices` (the catalog and the cluster inventory) and `agentc calibrate`
(measure this machine into a device profile)."""

from __future__ import annotations

import json

import click
from rich.table import Table

from agentc.cli._common import guarded
from agentc.report import console, num


@click.command("devices")
@click.option("--cluster", default=None, type=click.Path(dir_okay=False), help="Cluster inventory TOML.")
@click.option("--catalog", "catalogs", multiple=True, type=click.Path(dir_okay=False), help="Extra catalog TOML.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@guarded
def devices_cmd(cluster, catalogs, as_json):
    """Print the device catalog and the cluster inventory (pools, links, pricing).

    \b
    Examples:
      agentc devices
      agentc devices --cluster examples/clusters/table3.toml --json
    """
    import dataclasses

    from agentc.catalog import load_catalog, load_cluster
    from agentc.costmodel import usd_per_hr

    cat = load_catalog(catalogs)
    cl = load_cluster(cluster, cat)

    def priced(d, rule):
        """$/hr of device d under pricing `rule` with this cluster's financing and energy."""
        if d.is_abstract or not d.capex_usd:
            return None
        return round(usd_per_hr(d, dataclasses.replace(cl, pricing=rule)), 6)

    devs = []
    for d in sorted(cat.devices.values(), key=lambda d: d.name):
        devs.append({"name": d.name, "kind": d.kind, "vendor": d.vendor, "memory_gb": d.memory_gb,
                     "mem_gbps": d.mem_gbps, "fp16_tflops": d.fp16_tflops, "fp8_tflops": d.fp8_tflops,
                     "tdp_w": d.tdp_w, "capex_usd": d.capex_usd, "given_usd_per_hr": d.given_usd_per_hr,
                     "tco_usd_per_hr": priced(d, "tco"), "capex_usd_per_hr": priced(d, "capex"),
                     "target": d.target, "chip": d.chip})
    pools = [{"name": p.name, "device": p.device.name, "count": p.count, "nodes": p.nodes,
              "usd_per_hr": None if p.device.is_abstract and p.device.given_usd_per_hr is None
              else round(usd_per_hr(p.device, cl), 6)} for p in cl.pools]
    links = [{"a": l.a, "b": l.b, "gbps": l.gbps, "latency_ms": l.latency_ms} for l in cl.links]
    if as_json:
        click.echo(json.dumps({"devices": devs, "cluster": {"name": cl.name, "pricing": cl.pricing,
                                                            "pools": pools, "links": links}},
                              indent=2, sort_keys=True))
        return
    out = console()
    t = Table("device", "kind", "memory GB", "mem GB/s", "FP16 TFLOP/s", "FP8 TFLOP/s", "TDP W", "capex $",
              "given $/hr", "capex $/hr", "TCO $/hr", "target", title="device catalog")
    for d in devs:
        t.add_row(d["name"], d["kind"], num(d["memory_gb"]), num(d["mem_gbps"]), num(d["fp16_tflops"]),
                  num(d["fp8_tflops"]), num(d["tdp_w"]), num(d["capex_usd"]), num(d["given_usd_per_hr"]),
                  num(d["capex_usd_per_hr"]), num(d["tco_usd_per_hr"]), f"{d['target']} {d['chip']}".strip())
    out.print(t)
    t = Table("pool", "device", "count", "nodes", "$/hr each", title=f"cluster '{cl.name}' (pricing: {cl.pricing})")
    for p in pools:
        t.add_row(p["name"], p["device"], str(p["count"]), str(p["nodes"]), num(p["usd_per_hr"]))
    out.print(t)


@click.command("calibrate")
@click.option("--device", default="cpu", show_default=True,
              help="'cpu': measure this machine; with --from-measurements, the catalog device to fit.")
@click.option("--from-measurements", "measurements", default=None, type=click.Path(dir_okay=False),
              help="CSV of measured kernel times to fit (docs/calibration.md).")
@click.option("--catalog", "catalogs", multiple=True, type=click.Path(dir_okay=False), help="Extra catalog TOML.")
@click.option("-o", "--output", default="profile.toml", show_default=True, type=click.Path(dir_okay=False),
              help="Profile or overlay to write (a catalog file). Example: -o this_machine.toml")
@click.option("--name", default="this-cpu", show_default=True, help="Device name in a measured CPU profile.")
@guarded
def calibrate_cmd(device, measurements, catalogs, output, name):
    """Measure this machine (matmul FLOP/s, memory bandwidth, call overhead) and write a
    device profile, or fit a catalog device to a table of measured kernel times and
    write a catalog overlay of its efficiencies, fixed cost, roofline exponent and
    all-reduce figures with the fit's error. Both files work with --catalog and cluster files.

    \b
    Examples:
      agentc calibrate --device cpu -o profile.toml
      agentc calibrate --from-measurements h100.csv --device H100 -o h100_fit.toml
      agentc devices --catalog profile.toml
    """
    if measurements is not None:
        import os

        from agentc.costmodel.fit import fit_measurements, read_measurements, write_overlay
        from agentc.catalog import load_catalog
        from agentc.diagnostics import CatalogError

        cat = load_catalog(catalogs)
        if device not in cat.devices:
            raise CatalogError(f"unknown device '{device}' to fit", None,
                               (f"known devices: {', '.join(sorted(cat.devices))}",))
        fit = fit_measurements(read_measurements(measurements), cat.devices[device])
        write_overlay(output, device, fit, os.path.basename(measurements))
        click.echo(f"agentc: wrote {output}: " + ", ".join(
            f"{k} = {num(v)}" for k, v in sorted({**fit["device"], **fit["measured"]}.items())))
        return
    if device != "cpu":
        raise click.UsageError("--device NAME needs --from-measurements FILE.csv (only 'cpu' is measured here)")
    import os

    from agentc.calibrate import calibrate_cpu, write_profile
    from agentc.outputs import writing

    parent = os.path.dirname(os.path.abspath(output))
    if not os.path.isdir(parent) or not os.access(parent, os.W_OK):
        with writing(output):  # refuse before the measurement's seconds, not after
            raise FileNotFoundError(2, "no such directory" if not os.path.isdir(parent) else "not writable")
    data = calibrate_cpu(name=name)
    write_profile(output, data)
    m = data.get("measured", {})
    click.echo(f"agentc: wrote {output}: " + ", ".join(f"{k} = {num(v)}" for k, v in sorted(m.items())))
