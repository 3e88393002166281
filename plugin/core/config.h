// GIMP-free plug-in configuration (how to start the daemon, size limits) and the user-facing
// wording of errors. The config file is plain `key = value` lines, `#` starts a comment:
//   daemon        = /home/me/.local/bin/qwen-imaged        (default: qwen-imaged from PATH)
//   daemon_args   = --model /data/Qwen-Image --device cuda  (shell-style quoting)
//   instance      = default                                 ($QWEN_IMAGE_INSTANCE wins)
//   start_timeout = 600                                     (seconds to wait for a started daemon)
//   log           = /home/me/.cache/qwen-image/qwen-imaged.log
//   min_pixels    = 589824
//   max_pixels    = 1763584
//   autostart     = true
//   preview       = true    (a temporary preview layer shows the job's steps; issue #17)
// Location: $QWEN_IMAGE_GIMP_CONFIG, else $XDG_CONFIG_HOME/qwen-image/qwen-image.conf, else
// ~/.config/qwen-image/qwen-image.conf. A missing file means all defaults.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "geometry.h"

namespace qwen::plugin {

struct PluginConfig {
  std::string path;  // the file it came from ("" when none was found)
  std::string daemon = "qwen-imaged";
  std::vector<std::string> daemon_args;
  std::string instance;  // "" = $QWEN_IMAGE_INSTANCE or "default"
  int start_timeout_s = 600;
  std::string log;
  bool autostart = true;
  bool preview = true;  // live preview layer during a job
  SizeLimits limits;
  std::vector<std::string> warnings;  // unknown keys, bad values
};

std::string default_config_path();
// Parses the text of a config file (never throws; problems go to `warnings`).
PluginConfig parse_config(const std::string& text);
// Reads `path` (or default_config_path() when empty); a missing file gives the defaults.
PluginConfig load_config(const std::string& path = "");

// Splits a command line like a POSIX shell would for plain words, '...' and "..." quoting and
// backslash escapes (no expansions).
std::vector<std::string> split_args(const std::string& line);

// argv of the daemon to start for `instance`: daemon, daemon_args..., plus `--instance <name>`
// unless daemon_args already names one.
std::vector<std::string> daemon_argv(const PluginConfig& config, const std::string& instance);

// Whether a model (its name as the daemon lists it, and its folder when known) is an
// instruction-edit model (Qwen-Image-Edit*): "edit" in the name or in the folder's base name.
bool is_edit_model(const std::string& name, const std::string& dir = "");

// Error kinds as the plug-in reports them (mirrors qwen::ipc::ClientError::Kind plus plug-in
// side failures), so that the wording can be tested without a daemon.
enum class ErrorKind {
  NoDaemon,
  DaemonDied,
  ProtocolMismatch,
  Rejected,
  JobFailed,
  Cancelled,
  Timeout,
  SharedMemory,
};
// One message a person can act on; `detail` is the daemon's / client's own text.
std::string user_message(ErrorKind kind, const std::string& detail, const PluginConfig& config);
// Whether the plug-in runs inside a Flatpak sandbox (/.flatpak-info exists or $FLATPAK_ID is
// set). There a daemon that cannot be reached almost always means the sandbox's private /dev/shm,
// so NoDaemon and SharedMemory are worded as flatpak_message() instead of the generic text.
bool running_in_flatpak();
// What to do about it: `flatpak override --user --device=shm org.gimp.GIMP` and the Flatpak
// plug-in folder (~/.var/app/org.gimp.GIMP/config/GIMP/<series>/plug-ins/...).
std::string flatpak_message();
// The GIMP series the plug-in runs in ("3.0", "3.2", ...; default "3.0"): the GIMP 3 front-end
// sets it from the running libgimp, so one plug-in names the right profile folder on 3.0 and 3.2.
void set_gimp_series(const std::string& series);
// The "how to start it yourself" sentence used when no daemon answers.
std::string how_to_start(const PluginConfig& config);

}  // namespace qwen::plugin
