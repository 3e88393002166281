// The one procedure table of both front-ends (issue #17), the way GIMP's plug-ins/common/blinds.c
// declares its procedure once and builds its dialog from the declaration: each procedure's PDB
// name, menu label, documentation and every argument once (type, name, label, description, range,
// default, since when it exists). plugin/gimp/main.cpp registers the GIMP 2.10 PDB procedures from
// it and plugin/gimp/dialog.cpp builds the 2.10 dialog from it; plugin/gimp3/main.cpp registers
// the GIMP 3 procedures (whose dialog GimpProcedureDialog builds from the same arguments). Both
// read the values back into Settings through the argument's Field.
//
// Compatibility (users' scripts call the procedures positionally):
//  - Since::First arguments are the procedures' historic ones, in their historic order.
//  - Since::Appended arguments came later. GIMP 3 appends them to the same procedure with their
//    default (GIMP fills in what a call leaves out). GIMP 2.10 has no defaults and Script-Fu
//    checks the argument count, so there the historic procedure stays exactly as it was and a
//    second procedure, NAME + "2" (as GIMP's own file-png-save2), takes every argument.
//  - Since::DialogOnly values are no PDB argument (GIMP 3: an aux argument; 2.10: dialog only).
// Adding a procedure is one entry in procedure_table().
#pragma once

#include <string>
#include <vector>

#include "frontend.h"

namespace qwen::plugin {

// Layers: drawables of any open image (GIMP 3: an array of drawables; GIMP 2.10: an INT32 count
// followed by an INT32ARRAY of drawable ids).
enum class ArgType { String, Int, Double, Bool, Layers };
// Which Settings member an argument fills.
enum class Field {
  Prompt,
  Negative,
  Steps,
  Cfg,
  Seed,
  Layers,
  Resolution,
  CfgNormalize,
  Model,
  Strength,
  Loras,
  Lightning,
  References,
  Variants,
  ExpandLeft,  // Expand Canvas margins (issue #17)
  ExpandTop,
  ExpandRight,
  ExpandBottom
};
enum class Since { First, Appended, DialogOnly };

struct ArgDecl {
  ArgType type;
  Field field;
  const char* name;                  // PDB / GimpProcedureConfig property name
  const char* label;                 // dialog label with mnemonic
  const char* blurb;                 // PDB description
  double min = 0, max = 0, def = 0;  // Int / Double / Bool ranges and defaults; Layers: max count
  Since since = Since::First;
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

// Every procedure, in menu order. The front-ends register exactly these.
const std::vector<ProcDecl>& procedure_table();
const ProcDecl& decl_of(Proc proc);
const ProcDecl* decl_named(const std::string& name);  // the GIMP 3 / historic 2.10 name
const ProcDecl& decompose_decl();

// GIMP 2.10's procedures from one declaration: the historic one (Since::First arguments), and
// when the declaration has appended arguments, NAME + "2" with all PDB arguments.
bool has_appended(const ProcDecl& d);
std::string name_v2(const ProcDecl& d);  // "" when !has_appended(d)
enum class Pdb2Type { Int32, Float, String, Image, Drawable, Int32Array };
struct Pdb2Param {
  Pdb2Type type;
  std::string name, blurb;
  bool operator==(const Pdb2Param&) const = default;
};
// The 2.10 parameter list (run-mode, image, drawable, then the arguments; a Layers argument is
// "num-NAME" INT32 + NAME INT32ARRAY). `v2`: the "2" procedure's list.
std::vector<Pdb2Param> pdb2_params(const ProcDecl& d, bool v2);
// The GIMP 3 procedure's PDB arguments after run-mode/image/drawables (every argument but the
// DialogOnly ones, Appended last).
std::vector<const ArgDecl*> gimp3_args(const ProcDecl& d);

// The defaults of the declared arguments (a first run).
void apply_defaults(const ProcDecl& d, Settings& s);

// Settings members by Field (strings are truncated to their buffers).
void set_field(Settings& s, Field f, const char* value);
void set_field(Settings& s, Field f, double value);
double number_field(const Settings& s, Field f);
const char* string_field(const Settings& s, Field f);
// Layers (reference layers): at most 10 drawable ids; <= 0 entries are dropped.
void set_layers(Settings& s, Field f, const std::vector<int>& ids);
std::vector<int> layers_field(const Settings& s, Field f);

// The Settings::loras text, "name:0.8,other:-0.3" (strength 1 when omitted; names are bare file
// names from the daemon's lora_dir or absolute paths), as the job's LoRA list. Returns "" or an
// error naming the bad entry (for "Qwen-Image: <error>").
std::string parse_loras(const std::string& text, std::vector<qwen::ipc::JobLora>* out);

// Which models a procedure can use: caps known and suited (can_generate / can_edit /
// can_decompose), or unknown caps (a daemon older than version 3, a model not loaded and not
// inferable) and the name-based guess of old (edit models have "edit" in the name or folder).
bool model_suits(Proc proc, const std::string& name, const std::string& dir,
                 const qwen::ipc::ModelCaps& caps);
bool model_can_edit(const std::string& name, const std::string& dir,
                    const qwen::ipc::ModelCaps& caps);
// Whether the dialog offers "Fast (Lightning)": the model takes LoRAs and the daemon has a
// Lightning LoRA (a daemon older than protocol version 4 does not list its LoRAs: offered).
bool offer_lightning(const qwen::ipc::ModelCaps& caps, const DaemonInfo& daemon);
// How many reference layers the model takes besides the edited picture (max_references - 1);
// unknown caps: 0.
int reference_slots(Proc proc, const qwen::ipc::ModelCaps& caps);

}  // namespace qwen::plugin
