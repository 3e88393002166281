// FlowMatchEulerDiscreteScheduler as the Qwen-Image pipelines use it (spec
// transformer-and-pipelines.md §4): sigmas linspace(1, 1/N, N), dynamic (exponential) time shift
// with mu = calculate_shift(image tokens), shift_terminal stretch, Euler steps, scale_noise and the
// img2img strength start index. Schedule math is float32 exactly as the reference's NumPy code.
#pragma once

#include <torch/torch.h>

#include <optional>
#include <string>
#include <vector>

namespace qwen::pipelines {

// scheduler/scheduler_config.json (missing keys: the diffusers defaults).
struct SchedulerConfig {
  int num_train_timesteps = 1000;
  double shift = 1.0;
  bool use_dynamic_shifting = false;
  double base_shift = 0.5;
  double max_shift = 1.15;
  int64_t base_image_seq_len = 256;
  int64_t max_image_seq_len = 4096;
  std::optional<double> shift_terminal;         // absent / null / 0 = no stretch
  std::string time_shift_type = "exponential";  // or "linear"
  bool invert_sigmas = false;
  bool stochastic_sampling = false;

  // The values of Qwen-Image's released scheduler_config.json.
  static SchedulerConfig qwen_image();
  // Throws std::runtime_error naming the file and the problem (unsupported options included).
  static SchedulerConfig from_json_file(const std::string& path);
  static SchedulerConfig from_json_text(const std::string& text, const std::string& label);
};

// diffusers `calculate_shift` (float64): linear in the number of image (noise) tokens, no clamp.
double calculate_shift(int64_t image_seq_len, const SchedulerConfig& config);

// Strength -> first step index (diffusers `get_timesteps`): init = min(N * strength, N),
// t_start = int(max(N - init, 0)). `strength` is a double as Python passes it; see
// strength_from_float() for values that arrive as float.
int start_index_for_strength(int num_steps, double strength);
// The double a user typed for a float `strength` (shortest decimal round trip: 0.7f -> 0.7).
double strength_from_float(float strength);

class FlowMatchEulerScheduler {
 public:
  explicit FlowMatchEulerScheduler(SchedulerConfig config);

  // The pipelines' call: sigmas = linspace(1, 1/N, N) then set_timesteps(sigmas, mu).
  void set_timesteps(int num_steps, double mu);
  // Explicit input sigmas (float32), mu used only with use_dynamic_shifting.
  void set_timesteps_from_sigmas(const std::vector<float>& sigmas, double mu);

  const std::vector<float>& timesteps() const { return timesteps_; }  // N values, sigma * 1000
  const std::vector<float>& sigmas() const { return sigmas_; }        // N + 1 values, last 0
  int num_steps() const { return static_cast<int>(timesteps_.size()); }

  // Index bookkeeping as diffusers: step() advances step_index, which starts at begin_index.
  void set_begin_index(int index);
  int begin_index() const { return begin_index_; }
  int step_index() const { return step_index_; }

  // One Euler step from sigma[step_index] to sigma[step_index + 1]:
  // prod = dt * v in v's dtype, x_new = float32(x) + prod, cast back to x's dtype.
  // Keeps the sigmas on the sample's device: no host synchronisation.
  torch::Tensor step(const torch::Tensor& model_output, const torch::Tensor& sample);
  // sigma * noise + (1 - sigma) * sample with the sigma table cast to sample's dtype; sigma is
  // sigmas[step_index] after a step has been taken, else sigmas[begin_index].
  torch::Tensor scale_noise(const torch::Tensor& sample, const torch::Tensor& noise);
  // The same at an explicit sigma index.
  torch::Tensor scale_noise_at(const torch::Tensor& sample, const torch::Tensor& noise,
                               int sigma_index);
  // sigmas as a float32 tensor on `device` (cached).
  const torch::Tensor& sigmas_on(const torch::Device& device);

  const SchedulerConfig& config() const { return config_; }

 private:
  SchedulerConfig config_;
  std::vector<float> timesteps_, sigmas_;
  int begin_index_ = 0;
  int step_index_ = -1;  // -1 until the first step
  torch::Tensor sigmas_dev_;
};

}  // namespace qwen::pipelines
