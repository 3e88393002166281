#include "pipelines/scheduler.h"

#include <charconv>
#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <stdexcept>

#include "io/config_json.h"

namespace qwen::pipelines {

SchedulerConfig SchedulerConfig::qwen_image() {
  SchedulerConfig c;
  c.use_dynamic_shifting = true;
  c.base_shift = 0.5;
  c.max_shift = 0.9;
  c.base_image_seq_len = 256;
  c.max_image_seq_len = 8192;
  c.shift_terminal = 0.02;
  return c;
}

SchedulerConfig SchedulerConfig::from_json_text(const std::string& text, const std::string& label) {
  const auto j = io::parse_config_object(text, label);
  SchedulerConfig c;
  auto get = [&](const char* key, auto& out) {
    auto it = j.find(key);
    if (it == j.end() || it->is_null()) return;
    try {
      out = it->get<std::decay_t<decltype(out)>>();
    } catch (const std::exception& e) {
      throw std::runtime_error(label + ": key '" + key + "' has the wrong type");
    }
  };
  if (auto it = j.find("_class_name");
      it != j.end() && it->is_string() && *it != "FlowMatchEulerDiscreteScheduler")
    throw std::runtime_error(label + ": scheduler '" + it->get<std::string>() +
                             "' is not supported (only FlowMatchEulerDiscreteScheduler)");
  get("num_train_timesteps", c.num_train_timesteps);
  get("shift", c.shift);
  get("use_dynamic_shifting", c.use_dynamic_shifting);
  get("base_shift", c.base_shift);
  get("max_shift", c.max_shift);
  get("base_image_seq_len", c.base_image_seq_len);
  get("max_image_seq_len", c.max_image_seq_len);
  get("time_shift_type", c.time_shift_type);
  get("invert_sigmas", c.invert_sigmas);
  get("stochastic_sampling", c.stochastic_sampling);
  if (auto it = j.find("shift_terminal"); it != j.end()) {
    // Python truthiness: null, false and 0 disable the stretch.
    if (it->is_number() && it->get<double>() != 0.0)
      c.shift_terminal = it->get<double>();
    else if (!it->is_null() && !it->is_boolean() && !it->is_number())
      throw std::runtime_error(label + ": key 'shift_terminal' has the wrong type");
  }
  for (const char* key : {"use_karras_sigmas", "use_exponential_sigmas", "use_beta_sigmas"}) {
    bool on = false;
    get(key, on);
    if (on) throw std::runtime_error(label + ": '" + key + "' is not supported");
  }
  if (c.invert_sigmas) throw std::runtime_error(label + ": 'invert_sigmas' is not supported");
  if (c.stochastic_sampling)
    throw std::runtime_error(label + ": 'stochastic_sampling' is not supported");
  if (c.time_shift_type != "exponential" && c.time_shift_type != "linear")
    throw std::runtime_error(label + ": time_shift_type '" + c.time_shift_type +
                             "' is not supported (exponential or linear)");
  if (c.num_train_timesteps <= 0)
    throw std::runtime_error(label + ": num_train_timesteps must be positive");
  if (c.use_dynamic_shifting && c.max_image_seq_len == c.base_image_seq_len)
    throw std::runtime_error(label + ": max_image_seq_len must differ from base_image_seq_len");
  return c;
}

SchedulerConfig SchedulerConfig::from_json_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw std::runtime_error("cannot open scheduler config '" + path + "'");
  std::stringstream ss;
  ss << f.rdbuf();
  return from_json_text(ss.str(), path);
}

double calculate_shift(int64_t image_seq_len, const SchedulerConfig& c) {
  const double m = (c.max_shift - c.base_shift) /
                   static_cast<double>(c.max_image_seq_len - c.base_image_seq_len);
  const double b = c.base_shift - m * static_cast<double>(c.base_image_seq_len);
  return static_cast<double>(image_seq_len) * m + b;
}

int start_index_for_strength(int num_steps, double strength) {
  const double n = static_cast<double>(num_steps);
  const double init = std::min(n * strength, n);
  return static_cast<int>(std::max(n - init, 0.0));  // int() truncates
}

double strength_from_float(float strength) {
  char buf[64];
  auto res = std::to_chars(buf, buf + sizeof(buf), strength);
  double out = static_cast<double>(strength);
  std::from_chars(buf, res.ptr, out);
  return out;
}

FlowMatchEulerScheduler::FlowMatchEulerScheduler(SchedulerConfig config)
    : config_(std::move(config)) {}

void FlowMatchEulerScheduler::set_timesteps(int num_steps, double mu) {
  if (num_steps < 1) throw std::invalid_argument("the number of steps must be at least 1");
  // np.linspace(1.0, 1/N, N) in float64 (y[i] = i * step + start, last = stop), then float32.
  std::vector<float> s(static_cast<size_t>(num_steps));
  const double start = 1.0, stop = 1.0 / num_steps;
  if (num_steps == 1) {
    s[0] = static_cast<float>(start);
  } else {
    const double step = (stop - start) / (num_steps - 1);
    for (int i = 0; i < num_steps; ++i) s[i] = static_cast<float>(i * step + start);
    s.back() = static_cast<float>(stop);
  }
  set_timesteps_from_sigmas(s, mu);
}

void FlowMatchEulerScheduler::set_timesteps_from_sigmas(const std::vector<float>& in, double mu) {
  if (in.empty()) throw std::invalid_argument("scheduler: no sigmas");
  std::vector<float> s = in;
  if (config_.use_dynamic_shifting) {
    if (config_.time_shift_type == "exponential") {
      // exp(mu) is a Python float used as a weak scalar: rounded to float32, float32 math.
      const float e = static_cast<float>(std::exp(mu));
      for (auto& v : s) v = e / (e + (1.0f / v - 1.0f));
    } else {
      const float m = static_cast<float>(mu);
      for (auto& v : s) v = m / (m + (1.0f / v - 1.0f));
    }
  } else {
    const float sh = static_cast<float>(config_.shift);
    for (auto& v : s) v = sh * v / (1.0f + (sh - 1.0f) * v);
  }
  if (config_.shift_terminal) {
    // stretch_shift_to_terminal: z = 1 - sigma; k = z[-1] / (1 - terminal); sigma = 1 - z / k.
    // k is formed in float64 (NumPy 1.x scalar promotion) and rounded to float32 where used.
    // Deviation from the reference: with a single step (sigmas == [1]) z[-1] is 0 and the
    // reference computes 0/0 = NaN. We skip the stretch whenever z[-1] == 0, which gives the
    // valid one-step schedule sigmas [1, 0] / timesteps [1000].
    const float z_last = 1.0f - s.back();
    if (z_last != 0.0f) {
      const float k =
          static_cast<float>(static_cast<double>(z_last) / (1.0 - *config_.shift_terminal));
      for (auto& v : s) v = 1.0f - ((1.0f - v) / k);
    }
  }
  timesteps_.resize(s.size());
  const float scale = static_cast<float>(config_.num_train_timesteps);
  for (size_t i = 0; i < s.size(); ++i) timesteps_[i] = s[i] * scale;
  sigmas_ = s;
  sigmas_.push_back(0.0f);
  begin_index_ = 0;
  step_index_ = -1;
  sigmas_dev_ = torch::Tensor();
}

void FlowMatchEulerScheduler::set_begin_index(int index) {
  if (index < 0 || index >= num_steps())
    throw std::out_of_range("scheduler: begin index " + std::to_string(index) +
                            " outside the schedule of " + std::to_string(num_steps()) + " steps");
  begin_index_ = index;
  step_index_ = -1;
}

const torch::Tensor& FlowMatchEulerScheduler::sigmas_on(const torch::Device& device) {
  if (!sigmas_dev_.defined() || sigmas_dev_.device() != device) {
    sigmas_dev_ = torch::tensor(sigmas_, torch::kFloat32).to(device);
  }
  return sigmas_dev_;
}

torch::Tensor FlowMatchEulerScheduler::step(const torch::Tensor& model_output,
                                            const torch::Tensor& sample) {
  if (sigmas_.empty()) throw std::logic_error("scheduler: set_timesteps was not called");
  const int idx = step_index_ < 0 ? begin_index_ : step_index_;
  if (idx + 1 >= static_cast<int>(sigmas_.size()))
    throw std::out_of_range("scheduler: stepped past the end of the schedule");
  const auto& sig = sigmas_on(sample.device());
  auto dt = sig[idx + 1] - sig[idx];  // 0-dim float32: does not promote a bf16 model_output
  auto prev = sample.to(torch::kFloat32) + dt * model_output;
  step_index_ = idx + 1;
  return prev.to(model_output.scalar_type());
}

torch::Tensor FlowMatchEulerScheduler::scale_noise_at(const torch::Tensor& sample,
                                                      const torch::Tensor& noise, int index) {
  if (index < 0 || index >= static_cast<int>(sigmas_.size()))
    throw std::out_of_range("scheduler: sigma index out of range");
  auto sigma = sigmas_on(sample.device()).to(sample.scalar_type())[index];
  return sigma * noise + (1.0 - sigma) * sample;
}

torch::Tensor FlowMatchEulerScheduler::scale_noise(const torch::Tensor& sample,
                                                   const torch::Tensor& noise) {
  return scale_noise_at(sample, noise, step_index_ < 0 ? begin_index_ : step_index_);
}

}  // namespace qwen::pipelines
