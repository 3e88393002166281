#pragma once

namespace qwen::cli {
// Each returns the process exit code. argv[0] is the sub-command's name.
int cmd_inspect(int argc, char** argv);   // cmd_inspect.cpp
int cmd_tokenize(int argc, char** argv);  // cmd_tokenize.cpp
int cmd_generate(int argc, char** argv);  // cmd_generate.cpp (generate, img2img, inpaint, edit)
int cmd_img2img(int argc, char** argv);
int cmd_inpaint(int argc, char** argv);
int cmd_edit(int argc, char** argv);
int cmd_decompose(int argc, char** argv);  // Qwen-Image-Layered: image -> RGBA layers
int cmd_status(int argc, char** argv);  // cmd_status.cpp (talks to the daemon)
int cmd_plan(int argc, char** argv);    // cmd_plan.cpp (memory planner, torch-free)
}  // namespace qwen::cli
