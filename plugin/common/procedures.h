// One declaration of the Decompose procedure for both front-ends (issue #16; the single procedure
// table of issue #17, begun with this procedure): its PDB name, menu label, documentation and
// every argument once (type, name, label, description, range, default). plugin/gimp/main.cpp
// registers the GIMP 2.10 PDB procedure from it, plugin/gimp3/main.cpp the GIMP 3 one (whose
// dialog GIMP builds from the same arguments); both read the values back into Settings through
// the argument's Field. The three older procedures are still declared in each front-end.
#pragma once

#include <vector>

#include "frontend.h"

namespace qwen::plugin {

enum class ArgType { String, Int, Double, Bool };
// Which Settings member an argument fills.
enum class Field { Prompt, Negative, Steps, Cfg, Seed, Layers, Resolution, CfgNormalize, Model };

struct ArgDecl {
  ArgType type;
  Field field;
  const char* name;                  // PDB / GimpProcedureConfig property name
  const char* label;                 // dialog label with mnemonic (GIMP 3)
  const char* blurb;                 // PDB description
  double min = 0, max = 0, def = 0;  // Int / Double / Bool ranges and defaults
};

struct ProcDecl {
  Proc proc;
  const char* name;
  const char* menu_label;
  const char* title;  // dialog title
  const char* blurb;
  const char* help;
  std::vector<ArgDecl> args;  // after run-mode, image, drawable(s), in PDB order
  const char* return_name;
  const char* return_blurb;
};

const ProcDecl& decompose_decl();

// Settings members by Field (strings are truncated to their buffers).
void set_field(Settings& s, Field f, const char* value);
void set_field(Settings& s, Field f, double value);
double number_field(const Settings& s, Field f);
const char* string_field(const Settings& s, Field f);

}  // namespace qwen::plugin
