"""Calibration: a tiny measurement run, its profile written and read back as a device."""

from __future__ import annotations

import tomllib
from dataclasses import replace

import pytest

from agentc.calibrate import apply_efficiency, calibrate_cpu, fit_efficiency, write_profile
from agentc.catalog import load_catalog, load_device_profile
from agentc.costmodel import op_cost
from agentc.diagnostics import CatalogError, UsageError


@pytest.fixture(scope="module")
def measured():
    return calibrate_cpu(name="test-host", sizes=(64, 128), repeats=2, copy_mb=8,
                         bandwidth_bytes=(1 << 14, 1 << 16, 1 << 20))


def test_calibrate_measures_positive_rates(measured):
    dev, meas = measured["device"], measured["measured"]
    assert dev["fp32_tflops"] > 0 and dev["dram_gbps"] > 0 and dev["launch_us"] > 0
    assert meas["matmul_best_gflops"] == max(meas["matmul_64_gflops"], meas["matmul_128_gflops"])
    assert dev["target"] == "llvm-cpu" and dev["kind"] == "cpu"


def test_profile_round_trip(tmp_path, measured):
    path = tmp_path / "host.toml"
    write_profile(path, measured)
    with open(path, "rb") as f:
        raw = tomllib.load(f)
    assert set(raw) == {"device", "measured"}
    spec = load_device_profile(path)
    assert spec.name == "test-host" and spec.is_cpu
    assert spec.fp32_tflops == pytest.approx(measured["device"]["fp32_tflops"])
    assert spec.mem_gbps == pytest.approx(measured["device"]["dram_gbps"])
    assert [list(p) for p in spec.gemm_curve] == measured["device"]["gemm_curve"]
    assert [list(p) for p in spec.bandwidth_curve] == measured["device"]["bandwidth_curve"]
    assert [list(p) for p in spec.copy_curve] == measured["device"]["copy_curve"]
    # usable as a catalog extra file, hence as a device in a cluster; 1e9 FLOPs is past
    # the largest GEMM measured (2 x 128^3), so it runs at that size's rate
    cat = load_catalog([path])
    cost = op_cost("compute.cpu", {"flops": 1e9}, None, cat.devices["test-host"])
    last_gflops = measured["device"]["gemm_curve"][-1][1]
    assert cost.binding == "compute" and cost.compute_ms == pytest.approx(1e9 / (last_gflops * 1e9) * 1e3)


def test_calibration_curves_cover_the_sweep(measured):
    """One point per GEMM size (FLOPs = 2 n^3) and per working set (the square matrix
    nearest below it: 64^2, 128^2 and 512^2 floats), rates positive; DRAM is the
    largest working set's figure and the peak the best GEMM's."""
    dev = measured["device"]
    assert [p[0] for p in dev["gemm_curve"]] == [2 * 64**3, 2 * 128**3]
    assert [p[0] for p in dev["bandwidth_curve"]] == [64 * 64 * 4, 128 * 128 * 4, 512 * 512 * 4]
    # a copy's working set is its source and destination, each half of it
    assert [p[0] for p in dev["copy_curve"]] == [1 << 14, 1 << 16, 1 << 20]
    assert all(p[1] > 0 for p in dev["gemm_curve"] + dev["bandwidth_curve"] + dev["copy_curve"])
    assert dev["dram_gbps"] == dev["bandwidth_curve"][-1][1]
    assert dev["fp32_tflops"] == pytest.approx(max(p[1] for p in dev["gemm_curve"]) / 1e3, abs=1e-6)


def test_values_needing_quotes_round_trip(tmp_path, measured):
    data = {"device": dict(measured["device"], vendor='Acme "1"'), "measured": {"note": "a\\b\n"}}
    path = tmp_path / "q.toml"
    write_profile(path, data)
    assert load_device_profile(path).vendor == 'Acme "1"'
    with open(path, "rb") as f:
        assert tomllib.load(f)["measured"]["note"] == "a\\b\n"


def test_a_device_name_outside_the_name_rule_is_refused_before_writing(tmp_path, measured):
    """Device names follow the catalog's name rule (they were once quoted TOML keys, and a
    profile with 'my host' then failed only when loaded); nothing is written."""
    path = tmp_path / "q.toml"
    with pytest.raises(UsageError, match="device name 'my host' contains ' '"):
        write_profile(path, {"device": dict(measured["device"], name="my host")})
    assert not path.exists()
    with pytest.raises(UsageError, match="device name '../x' contains a path separator"):
        calibrate_cpu(name="../x")


def test_profile_text_marks_the_placeholders(tmp_path, measured):
    path = tmp_path / "p.toml"
    write_profile(path, measured)
    text = path.read_text()
    assert text.startswith("# agentc device profile")
    assert "edit them: capex_usd, tdp_w, given_usd_per_hr, nic_gbits_s." in text
    assert "[device.test-host]\n" in text and "\n[measured]\n" in text


def test_fit_efficiency(tmp_path, measured):
    path = tmp_path / "host.toml"
    write_profile(path, measured)
    spec = load_device_profile(path)
    peak = load_catalog().devices["epyc-9654"]
    fitted = fit_efficiency(spec, peak)
    assert fitted["compute_efficiency"] == pytest.approx(min(1.0, spec.fp32_tflops / peak.fp32_tflops))
    assert fitted["memory_efficiency"] == pytest.approx(min(1.0, spec.mem_gbps / peak.mem_gbps))
    assert apply_efficiency(peak, fitted).compute_efficiency == fitted["compute_efficiency"]


# --------------------------------------------------------------------------- measured curves in the cost model

_CURVED = """
[device.curved]
kind = "cpu"
capex_usd = 1
memory_gb = 64
dram_gbps = 20
fp16_tflops = 0.1
fp32_tflops = 0.1
tdp_w = 1
devices_per_chassis = 1
nic_gbits_s = 10
launch_us = 2
target = "llvm-cpu"
bandwidth_curve = [[1e6, 80.0], [1e8, 20.0]]
gemm_curve = [[1e6, 10.0], [1e10, 100.0]]
"""


def _profile(tmp_path, text, name="p.toml"):
    path = tmp_path / name
    path.write_text(text)
    return load_device_profile(path)


def test_curves_price_by_working_set_and_call_size(tmp_path):
    """Rates are read off the curve, linear in log-log between points (hand-computed):
    1e7 bytes is halfway in log between 1e6 (80 GB/s) and 1e8 (20 GB/s): sqrt(80 x 20)
    = 40 GB/s; 1e8 FLOPs halfway between 10 and 100 GFLOP/s: sqrt(1000) GFLOP/s."""
    dev = _profile(tmp_path, _CURVED)
    cases = [  # (bytes, expected memory ms)
        (5e5, 5e5 / 80e9 * 1e3),     # below the first point: its rate (L1/L2)
        (1e7, 1e7 / 40e9 * 1e3),
        (1e9, 1e9 / 20e9 * 1e3),     # past the last point: DRAM
    ]
    for nbytes, ms in cases:
        cost = op_cost("compute.cpu", {"flops": 1.0, "bytes": nbytes}, None, dev)
        assert cost.memory_ms == pytest.approx(ms, rel=1e-12)
        assert cost.time_ms == pytest.approx(max(ms, cost.compute_ms) + 2e-3, rel=1e-12)
    cost = op_cost("compute.cpu", {"flops": 1e8, "bytes": 8.0}, None, dev)
    assert cost.compute_ms == pytest.approx(1e8 / (1000 ** 0.5 * 1e9) * 1e3, rel=1e-12)
    # without curves the same device prices at its flat numbers, as before
    flat = replace(dev, bandwidth_curve=(), gemm_curve=())
    assert op_cost("compute.cpu", {"flops": 1e8, "bytes": 1e7}, None, flat).time_ms == pytest.approx(
        max(1e8 / 0.1e12, 1e7 / 20e9) * 1e3 + 2e-3, rel=1e-12)


@pytest.mark.parametrize("read, written, expected_s", [
    # (bytes read, bytes written, hand-computed seconds); 1e7 B is halfway in log between
    # the points: read 40 GB/s, copy sqrt(40 x 10) = 20 GB/s
    (5e6, 5e6, 1e7 / 20e9),                    # a copy: all of it at the copy rate
    (7.5e6, 2.5e6, 5e6 / 40e9 + 5e6 / 20e9),   # reads beyond the written bytes at the read rate
    (0.0, 1e7, 1e7 / 20e9),                    # writes alone at the copy rate
    (1e7, 0.0, 1e7 / 40e9),                    # reads alone, as before
])
def test_written_bytes_are_priced_at_the_copy_rate(tmp_path, read, written, expected_s):
    text = _CURVED + "copy_curve = [[1e6, 40.0], [1e8, 10.0]]\n"
    dev = _profile(tmp_path, text)
    cost = op_cost("compute.cpu", {"flops": 1.0, "bytes": read, "bytes_written": written}, None, dev)
    assert cost.memory_ms == pytest.approx(expected_s * 1e3, rel=1e-12)
    # without a copy curve written bytes stream at the read rate, as before
    plain = op_cost("compute.cpu", {"flops": 1.0, "bytes": read, "bytes_written": written}, None,
                    _profile(tmp_path, _CURVED, "plain.toml"))
    assert plain.memory_ms == pytest.approx((read + written) / 40e9 * 1e3, rel=1e-12)


def test_an_llm_on_a_curved_cpu_streams_its_weights_from_dram(tmp_path):
    """Composition: a decode's working set is its weights and KV cache (GBs), so on a
    measured curve it is priced at the largest working set's bandwidth, exactly as a
    device whose only bandwidth is that figure; the cache levels never flatter it."""
    dev = _profile(tmp_path, _CURVED)
    model = load_catalog().models["llama3-8b"]
    as_dram = replace(dev, bandwidth_curve=(), mem_gbps=20.0)
    attrs = {"tokens": 4, "context": 512, "batch": 1}
    curved, flat = (op_cost("llm.decode", attrs, model, d) for d in (dev, as_dram))
    assert curved.memory_ms == pytest.approx(flat.memory_ms, rel=1e-12)
    assert curved.memory_ms > 0


@pytest.mark.parametrize("curve, message", [
    ("7", "'bandwidth_curve' must be a list of [working-set bytes, GB/s] pairs, got 7"),
    ("[]", "'bandwidth_curve' must be a list of [working-set bytes, GB/s] pairs, got []"),
    ("[[1e6, 80.0, 3]]", "entry 0 is [1000000.0, 80.0, 3]"),
    ('[[1e6, "fast"]]', "entry 0 is [1000000.0, 'fast']"),
    ("[[1e6, -80.0]]", "'bandwidth_curve' entry 0: size and rate must be positive"),
    ("[[1e6, 80.0], [1e6, 20.0]]", "'bandwidth_curve' entry 1: sizes must increase, got 1000000.0 after 1000000.0"),
    ("[[1e6, 80.0], [inf, 20.0]]", "entry 1: size and rate must be positive and at most"),
])
def test_a_bad_curve_is_a_located_error(tmp_path, curve, message):
    text = _CURVED.replace("bandwidth_curve = [[1e6, 80.0], [1e8, 20.0]]", f"bandwidth_curve = {curve}")
    with pytest.raises(CatalogError) as e:
        _profile(tmp_path, text)
    assert message in e.value.message
    assert e.value.loc.line == text.splitlines().index(f"bandwidth_curve = {curve}") + 1


def test_curves_survive_an_override_of_another_key(tmp_path):
    """A later file that overrides one key of a measured device keeps its curves, also
    when the catalog is rebuilt from specs (cluster files do that)."""
    from agentc.catalog.catalogs import CatalogBuilder

    first = tmp_path / "a.toml"
    first.write_text(_CURVED)
    second = tmp_path / "b.toml"
    second.write_text("[device.curved]\nlaunch_us = 3\n")
    b = CatalogBuilder.from_catalog(load_catalog([first]))
    b.add_file(str(second))
    dev = b.build().devices["curved"]
    assert dev.launch_us == 3
    assert dev.bandwidth_curve == ((1e6, 80.0), (1e8, 20.0)) and dev.gemm_curve == ((1e6, 10.0), (1e10, 100.0))


def test_a_curve_gives_its_measured_rate_at_its_points_and_takes_big_gemms(tmp_path):
    """At a measured size the rate is the measurement itself (not exp(log(r)) one ulp
    off); an 8192^3 GEMM (1.1e12 FLOPs) is a valid curve point."""
    from agentc.catalog.specs import curve_rate

    pts = ((1e3, 10.0), (1048576.0, 41.7), (1e8, 20.0))
    assert [curve_rate(pts, x) for x, _ in pts] == [10.0, 41.7, 20.0]
    text = _CURVED.replace("gemm_curve = [[1e6, 10.0], [1e10, 100.0]]",
                           "gemm_curve = [[1e6, 10.0], [1099511627776.0, 100.0]]")
    assert _profile(tmp_path, text).gemm_curve[-1] == (2.0 ** 40, 100.0)


def test_efficiencies_are_not_fitted_over_measured_curves(tmp_path):
    """fit_measurements scales peaks; on a device priced by curves it would discount a
    measurement twice, so it refuses."""
    from agentc.costmodel.fit import MeasurementError, fit_measurements

    with pytest.raises(MeasurementError, match="has measured rate curves"):
        fit_measurements([], _profile(tmp_path, _CURVED))
    copy_only = _CURVED.replace("bandwidth_curve = [[1e6, 80.0], [1e8, 20.0]]\n", "").replace(
        "gemm_curve = [[1e6, 10.0], [1e10, 100.0]]", "copy_curve = [[1e6, 10.0]]")
    with pytest.raises(MeasurementError, match="has measured rate curves"):
        fit_measurements([], _profile(tmp_path, copy_only, "copy.toml"))


def test_a_bad_copy_curve_is_a_located_error(tmp_path):
    text = _CURVED + "copy_curve = [[1e6, 0.0]]\n"
    with pytest.raises(CatalogError) as e:
        _profile(tmp_path, text)
    assert "'copy_curve' entry 0: size and rate must be positive" in e.value.message
    assert e.value.loc.line == text.splitlines().index("copy_curve = [[1e6, 0.0]]") + 1
