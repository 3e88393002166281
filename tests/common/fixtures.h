// Test helpers: golden tensors from tests/fixtures/qwen-tiny (the project's own copy).
#pragma once

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <map>
#include <string>

namespace qwen::test {

// Absolute path inside tests/fixtures/qwen-tiny, e.g.
// fixture_path("cases/vae/tensors.safetensors").
std::string fixture_path(const std::string& relative);
std::string tiny_model_dir();       // models/qwen-image-tiny
std::string tiny_edit_model_dir();  // models/qwen-image-edit-2509-tiny

// Loads every tensor of a safetensors file (float tensors as float32, integers as int64).
std::map<std::string, torch::Tensor> load_tensors(const std::string& path);

// Parsed inputs.json of a case.
std::string read_text(const std::string& path);

// gtest-friendly comparison: max |a-b| <= atol + rtol*|b| elementwise; the message reports the
// worst element, the max abs diff and the shapes.
::testing::AssertionResult AllClose(const torch::Tensor& actual, const torch::Tensor& expected,
                                    double atol, double rtol = 0.0);

}  // namespace qwen::test
