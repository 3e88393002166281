#include "config.h"

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <fstream>
#include <sstream>

namespace qwen::plugin {

namespace {

std::string trim(const std::string& s) {
  size_t a = s.find_first_not_of(" \t\r\n"), b = s.find_last_not_of(" \t\r\n");
  return a == std::string::npos ? std::string() : s.substr(a, b - a + 1);
}

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  return s;
}

bool contains(const std::string& haystack, const std::string& needle) {
  return lower(haystack).find(needle) != std::string::npos;
}

std::string env(const char* name) {
  const char* v = std::getenv(name);
  return v ? v : "";
}

std::string expand_home(const std::string& p) {
  if (p.size() >= 2 && p[0] == '~' && p[1] == '/') return env("HOME") + p.substr(1);
  return p;
}

}  // namespace

std::string default_config_path() {
  if (auto p = env("QWEN_IMAGE_GIMP_CONFIG"); !p.empty()) return p;
  auto base = env("XDG_CONFIG_HOME");
  if (base.empty()) base = env("HOME") + "/.config";
  return base + "/qwen-image/qwen-image.conf";
}

std::vector<std::string> split_args(const std::string& line) {
  std::vector<std::string> out;
  std::string cur;
  bool have = false;
  char quote = 0;
  for (size_t i = 0; i < line.size(); ++i) {
    char c = line[i];
    if (quote == '\'') {
      if (c == '\'')
        quote = 0;
      else
        cur += c;
    } else if (quote == '"') {
      if (c == '"')
        quote = 0;
      else if (c == '\\' && i + 1 < line.size() &&
               std::string("\"\\$`").find(line[i + 1]) != std::string::npos)
        cur += line[++i];
      else
        cur += c;
    } else if (c == '\'' || c == '"') {
      quote = c;
      have = true;
    } else if (c == '\\' && i + 1 < line.size()) {
      cur += line[++i];
      have = true;
    } else if (std::isspace(static_cast<unsigned char>(c))) {
      if (have) out.push_back(cur);
      cur.clear();
      have = false;
    } else {
      cur += c;
      have = true;
    }
  }
  if (have) out.push_back(cur);
  return out;
}

PluginConfig parse_config(const std::string& text) {
  PluginConfig c;
  std::istringstream in(text);
  std::string line;
  int lineno = 0;
  while (std::getline(in, line)) {
    ++lineno;
    std::string t = trim(line);
    if (t.empty() || t[0] == '#') continue;
    auto eq = t.find('=');
    if (eq == std::string::npos) {
      c.warnings.push_back("line " + std::to_string(lineno) + ": expected key = value");
      continue;
    }
    std::string key = lower(trim(t.substr(0, eq))), value = trim(t.substr(eq + 1));
    auto number = [&](long long& dst) {
      char* end = nullptr;
      long long v = std::strtoll(value.c_str(), &end, 10);
      if (value.empty() || *end || v < 0)
        c.warnings.push_back("line " + std::to_string(lineno) + ": " + key + " needs a number");
      else
        dst = v;
    };
    if (key == "daemon") {
      c.daemon = expand_home(value);
    } else if (key == "daemon_args") {
      c.daemon_args = split_args(value);
      for (auto& a : c.daemon_args) a = expand_home(a);
    } else if (key == "instance") {
      c.instance = value;
    } else if (key == "log") {
      c.log = expand_home(value);
    } else if (key == "start_timeout") {
      long long v = c.start_timeout_s;
      number(v);
      c.start_timeout_s = int(std::min<long long>(v, 24 * 3600));
    } else if (key == "min_pixels") {
      long long v = c.limits.min_pixels;
      number(v);
      c.limits.min_pixels = v;
    } else if (key == "max_pixels") {
      long long v = c.limits.max_pixels;
      number(v);
      c.limits.max_pixels = v;
    } else if (key == "autostart") {
      std::string v = lower(value);
      c.autostart = !(v == "false" || v == "no" || v == "0" || v == "off");
    } else if (key == "preview") {
      std::string v = lower(value);
      c.preview = !(v == "false" || v == "no" || v == "0" || v == "off");
    } else {
      c.warnings.push_back("line " + std::to_string(lineno) + ": unknown key '" + key + "'");
    }
  }
  if (c.limits.max_pixels > 0 && c.limits.min_pixels > c.limits.max_pixels)
    c.limits.min_pixels = c.limits.max_pixels;
  return c;
}

PluginConfig load_config(const std::string& path) {
  std::string p = path.empty() ? default_config_path() : path;
  std::ifstream f(p);
  if (!f) return PluginConfig{};
  std::stringstream ss;
  ss << f.rdbuf();
  PluginConfig c = parse_config(ss.str());
  c.path = p;
  return c;
}

std::vector<std::string> daemon_argv(const PluginConfig& config, const std::string& instance) {
  std::vector<std::string> argv{config.daemon};
  argv.insert(argv.end(), config.daemon_args.begin(), config.daemon_args.end());
  bool named = std::any_of(config.daemon_args.begin(), config.daemon_args.end(), [](auto& a) {
    return a == "--instance" || a.rfind("--instance=", 0) == 0;
  });
  if (!named && !instance.empty()) {
    argv.push_back("--instance");
    argv.push_back(instance);
  }
  return argv;
}

bool is_edit_model(const std::string& name, const std::string& dir) {
  std::string base = dir;
  while (!base.empty() && base.back() == '/') base.pop_back();
  if (auto slash = base.rfind('/'); slash != std::string::npos) base = base.substr(slash + 1);
  return contains(name, "edit") || contains(base, "edit");
}

std::string how_to_start(const PluginConfig& config) {
  std::string where = config.path.empty() ? default_config_path() : config.path;
  return "Start it with `systemctl --user start qwen-imaged` (after installers/install.sh) or run "
         "`" +
         config.daemon +
         "` in a terminal (models come from ~/.config/qwen-image/daemon.conf or --model DIR). "
         "The plug-in starts it by itself when `daemon` in " +
         where + " names the program.";
}

bool running_in_flatpak() {
  const char* id = std::getenv("FLATPAK_ID");
  return (id && *id) || std::ifstream("/.flatpak-info").good();
}

namespace {
std::string& gimp_series() {
  static std::string series = "3.0";
  return series;
}
}  // namespace

void set_gimp_series(const std::string& series) {
  if (!series.empty()) gimp_series() = series;
}

std::string flatpak_message() {
  return "Qwen-Image: GIMP runs as a Flatpak, and its sandbox has a private /dev/shm, so the "
         "plug-in cannot reach the qwen-imaged daemon on this computer. Allow it once with\n"
         "  flatpak override --user --device=shm org.gimp.GIMP\n"
         "then restart GIMP (and start the daemon outside the sandbox: systemctl --user start "
         "qwen-imaged). The plug-in belongs in "
         "~/.var/app/org.gimp.GIMP/config/GIMP/" +
         gimp_series() + "/plug-ins/qwen-image-gimp3/.";
}

std::string user_message(ErrorKind kind, const std::string& detail, const PluginConfig& config) {
  const std::string d = detail.empty() ? "" : " (" + detail + ")";
  if ((kind == ErrorKind::NoDaemon || kind == ErrorKind::SharedMemory) && running_in_flatpak())
    return flatpak_message() + (detail.empty() ? "" : "\nDetail: " + detail);
  switch (kind) {
    case ErrorKind::NoDaemon:
      return "Qwen-Image: no daemon is running" + d + ". " + how_to_start(config);
    case ErrorKind::DaemonDied:
      return "Qwen-Image: the daemon stopped during the job" + d +
             ". Look at its log (journalctl --user -u qwen-imaged, or " +
             (config.log.empty() ? std::string("~/.cache/qwen-image/qwen-imaged.log")
                                 : config.log) +
             ") and start it again.";
    case ErrorKind::ProtocolMismatch:
      return "Qwen-Image: the plug-in and the daemon are different versions" + d +
             ". Reinstall both from the same build (installers/install.sh) and restart the daemon "
             "(systemctl --user restart qwen-imaged).";
    case ErrorKind::Cancelled:
      return "Qwen-Image: the job was cancelled.";
    case ErrorKind::Timeout:
      return "Qwen-Image: the daemon did not answer in time" + d +
             ". It may still be loading the model; try again in a moment.";
    case ErrorKind::SharedMemory:
      return "Qwen-Image: cannot use shared memory with the daemon" + d +
             ". GIMP and the daemon must see the same /dev/shm (a Flatpak GIMP needs "
             "`flatpak override --user --device=shm org.gimp.GIMP`; a Snap GIMP cannot share it, "
             "use a native GIMP).";
    case ErrorKind::Rejected:
    case ErrorKind::JobFailed:
      break;
  }
  const bool oom = contains(detail, "out of memory") || contains(detail, "outofmemory") ||
                   contains(detail, "cuda error: out");
  // The daemon says which memory ran out (issue #13): the model itself (its pre-flight check
  // "model '...' does not fit on cuda:0: <planner advice>", or a load that ran out part-way,
  // "cannot load model ...: ... out of memory") - a smaller selection cannot help there - or the
  // job's activations ("out of device memory at WxH: <advice> [<torch's message>]"), where the
  // daemon's advice matches the job (fewer layers, a smaller image, a lighter memory mode).
  if (contains(detail, "does not fit on") || (oom && contains(detail, "cannot load model")))
    return "Qwen-Image: the model does not fit in the GPU's memory" + d +
           ". A smaller selection will not help: set a lighter memory mode (memory = stream in "
           "the daemon's daemon.conf) or use a smaller transformer file (fp8 or GGUF), then "
           "restart the daemon; `qwen-image plan --model DIR --vram SIZE` shows what fits.";
  if (const auto at = detail.find("out of device memory at "); at != std::string::npos) {
    const auto colon = detail.find(": ", at);
    if (colon != std::string::npos) {
      const auto end = detail.find(" [", colon);
      std::string advice =
          detail.substr(colon + 2, end == std::string::npos ? std::string::npos : end - colon - 2);
      if (!advice.empty())
        advice[0] = static_cast<char>(std::toupper(static_cast<unsigned char>(advice[0])));
      return "Qwen-Image: the GPU ran out of memory during the job" + d + ". " + advice + ".";
    }
  }
  if (oom)
    return "Qwen-Image: the GPU ran out of memory" + d +
           ". Use a smaller selection or image (or lower max_pixels in the plug-in config), one "
           "variant at a time, or close other programs using the GPU.";
  if (contains(detail, "model") &&
      (contains(detail, "not found") || contains(detail, "unknown") ||
       contains(detail, "missing") || contains(detail, "no such") ||
       contains(detail, "not configured") || contains(detail, "not loaded") ||
       contains(detail, "cannot open")))
    return "Qwen-Image: the model is not available" + d +
           ". Download it (Qwen/Qwen-Image or Qwen/Qwen-Image-Edit-2509) and point the daemon's "
           "--model at the folder (see the user guide), then restart the daemon.";
  if (kind == ErrorKind::Rejected) return "Qwen-Image: the daemon refused the job" + d + ".";
  return "Qwen-Image: the job failed" + d + ".";
}

}  // namespace qwen::plugin
