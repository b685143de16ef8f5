"""Calibration: a tiny measurement run, its profile written and read back as a device."""

from __future__ import annotations

import tomllib

import pytest

from agentc.calibrate import apply_efficiency, calibrate_cpu, fit_efficiency, write_profile
from agentc.catalog import load_catalog, load_device_profile
from agentc.costmodel import op_cost
from agentc.diagnostics import UsageError


@pytest.fixture(scope="module")
def measured():
    return calibrate_cpu(name="test-host", sizes=(64, 128), repeats=2, copy_mb=8)


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
    # usable as a catalog extra file, hence as a device in a cluster
    cat = load_catalog([path])
    cost = op_cost("compute.cpu", {"flops": 1e9}, None, cat.devices["test-host"])
    assert cost.binding == "compute" and cost.compute_ms == pytest.approx(1e9 / (spec.fp32_tflops * 1e12) * 1e3)


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
