"""bench/profile_step.py: kernels sorted into the right kinds, profiler ranges not counted as kernels."""

import json

import pytest
from conftest import bench_script


@pytest.fixture(scope="module")
def profile_step():
    with bench_script("profile_step") as module:  # profile_step imports its shapes from train_throughput
        yield module


# Kernel names from the H200 profile in bench/results/h200-2026-11-26b/profile_step.json.
@pytest.mark.parametrize(("name", "expected"), [
    ("triton_poi_fused__log_softmax__log_softmax_backward_data__to_copy__unsafe_view_arange_clone_eq", "loss"),
    ("triton_per_fused__to_copy_add_native_layer_norm_backward_view_10", "layer norm"),
    ("triton_poi_fused_gelu_gelu_backward_view_7", "GELU"),
    ("cudnn_generated_fort_native_sdpa_sm90_flash_bprop_wgmma_f16_knob_26_64x64x64", "attention"),
    ("void cudnn::fusion::compute_dot_do_o_specialized<true, 64>(void const*, void const*)", "attention"),
    ("nvjet_sm90_tst_256x128_64x4_1x2_h_bz_coopA_NNT", "matmul (Muon's iterations too)"),
    ("void cublasLt::splitKreduce_kernel<32, 16, int, float, __nv_bfloat16>", "matmul (Muon's iterations too)"),
    ("void at::native::(anonymous namespace)::multi_tensor_apply_kernel<FusedOptimizerTensorListMetadata<4>>",
     "optimizer"),
    ("triton_poi_fused__to_copy_view_3", "copy/cast"),
    ("Memset (Device)", "copy/cast"),
    ("triton_red_fused_sum_4", "other element-wise (residual adds, dropout, bias sums)"),
])
def test_kernels_are_sorted_by_the_operation_that_names_them(profile_step, name, expected):
    assert profile_step.kind(name) == expected


def test_profiler_ranges_are_not_kernels_but_cpp_lambdas_are(profile_step):
    assert profile_step.ANNOTATION.search("Optimizer.step#AdamW.step")
    assert profile_step.ANNOTATION.search("ProfilerStep#3")
    assert profile_step.ANNOTATION.search("Torch-Compiled Region: 0/0")
    lambda_kernel = ("void at::native::reduce_kernel<128, 4, at::native::ReduceOp<float, "
                     "sum_functor<float, float, float>::operator()(at::TensorIterator&)::{lambda(float, float)#1}>>")
    assert not profile_step.ANNOTATION.search(lambda_kernel)


@pytest.mark.slow
def test_a_cpu_profile_adds_up_and_reports_the_wall_clock(profile_step, tmp_path):
    out = tmp_path / "profile.json"
    profile_step.main(["--device", "cpu", "--shape", "tiny", "--batch", "2", "--warmup", "1", "--steps", "2",
                       "--save", str(out)])
    result = json.loads(out.read_text())
    assert sum(result["by_kind_ms"].values()) == pytest.approx(result["ms_per_step"])
    assert result["by_kind_ms"]["matmul (Muon's iterations too)"] > 0
    assert result["wall_ms_per_step"] > 0
