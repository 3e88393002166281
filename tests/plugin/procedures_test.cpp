// The one procedure table (plugin/common/procedures.h, issue #17): both front-ends register what
// it declares, the historic GIMP 2.10 procedures keep their exact parameter lists (users' scripts
// call them positionally), the "2" procedures and GIMP 3's appended arguments add loras,
// lightning and the reference layers after them; the LoRA text parses into the job's LoRA list or
// gives an error naming the bad entry; models are offered by their typed capabilities.
#include "procedures.h"

#include <gtest/gtest.h>

#include <set>

using namespace qwen::plugin;

namespace {

using P = Pdb2Param;
using T = Pdb2Type;

// The GIMP 2.10 parameter lists as plugin/gimp/main.cpp declared them by hand before the table
// (params_of), for the historic procedures.
std::vector<P> historic(Proc proc) {
  std::vector<P> p = {
      {T::Int32, "run-mode", "The run mode { RUN-INTERACTIVE (0), RUN-NONINTERACTIVE (1) }"},
      {T::Image, "image", "Input image"},
      {T::Drawable, "drawable", "Input drawable"},
      {T::String, "prompt", proc == Proc::EditLayer ? "Edit instruction" : "Prompt"},
      {T::String, "negative-prompt", "Negative prompt (\"\" for none)"},
      {T::Int32, "steps", "Denoising steps (1..200)"},
      {T::Float, "true-cfg-scale", "True CFG scale (active with a negative prompt)"},
      {T::Int32, "seed", "Seed (-1 for random)"},
  };
  if (proc == Proc::EditSelection)
    p.push_back({T::Float, "strength", "How much of the selection is repainted (0..1)"});
  p.push_back({T::String, "model", "Model name (\"\" for the daemon's default)"});
  return p;
}

std::vector<std::string> names(const std::vector<P>& p) {
  std::vector<std::string> n;
  for (auto& x : p) n.push_back(x.name);
  return n;
}

}  // namespace

TEST(ProcedureTable, HoldsEveryProcedureOnceUnderItsHistoricName) {
  std::set<std::string> seen;
  for (const auto& d : procedure_table()) {
    EXPECT_TRUE(seen.insert(d.name).second) << d.name;
    EXPECT_EQ(decl_named(d.name), &d);
    EXPECT_EQ(&decl_of(d.proc), &d);
    std::set<std::string> args;
    for (const auto& a : d.args) EXPECT_TRUE(args.insert(a.name).second) << d.name << " " << a.name;
  }
  for (const char* n : {kProcGenerate, kProcEditSelection, kProcEditLayer, kProcDecompose})
    EXPECT_TRUE(seen.count(n)) << n;
  EXPECT_EQ(decl_named("plug-in-qwen-image-generate2"), nullptr);
}

TEST(ProcedureTable, Gimp210HistoricProceduresKeepTheirExactParameters) {
  for (Proc proc : {Proc::Generate, Proc::EditSelection, Proc::EditLayer}) {
    const ProcDecl& d = decl_of(proc);
    EXPECT_EQ(pdb2_params(d, false), historic(proc)) << d.name;
    ASSERT_TRUE(has_appended(d)) << d.name;
  }
  // Decompose was declared from the table from the start and has nothing appended.
  const ProcDecl& dec = decompose_decl();
  EXPECT_FALSE(has_appended(dec));
  EXPECT_EQ(name_v2(dec), "");
  EXPECT_EQ(names(pdb2_params(dec, false)),
            (std::vector<std::string>{"run-mode", "image", "drawable", "prompt", "negative-prompt",
                                      "steps", "true-cfg-scale", "seed", "layers", "resolution",
                                      "cfg-normalize", "model"}));
}

TEST(ProcedureTable, Gimp210SecondProceduresAppendLorasLightningAndReferences) {
  const ProcDecl& gen = decl_of(Proc::Generate);
  EXPECT_EQ(name_v2(gen), "plug-in-qwen-image-generate2");
  auto p = pdb2_params(gen, true);
  auto old = historic(Proc::Generate);
  ASSERT_EQ(p.size(), old.size() + 2);
  EXPECT_TRUE(std::equal(old.begin(), old.end(), p.begin()));  // the old ones first, unchanged
  EXPECT_EQ(p[old.size()].name, "loras");
  EXPECT_EQ(p[old.size()].type, T::String);
  EXPECT_EQ(p[old.size() + 1].name, "lightning");
  EXPECT_EQ(p[old.size() + 1].type, T::Int32);

  for (Proc proc : {Proc::EditSelection, Proc::EditLayer}) {
    const ProcDecl& d = decl_of(proc);
    EXPECT_EQ(name_v2(d), std::string(d.name) + "2");
    auto q = pdb2_params(d, true);
    auto h = historic(proc);
    ASSERT_EQ(q.size(), h.size() + 4) << d.name;
    EXPECT_TRUE(std::equal(h.begin(), h.end(), q.begin())) << d.name;
    const std::vector<std::string> tail = {q[h.size()].name, q[h.size() + 1].name,
                                           q[h.size() + 2].name, q[h.size() + 3].name};
    EXPECT_EQ(tail, (std::vector<std::string>{"loras", "lightning", "num-reference-layers",
                                              "reference-layers"}));
    EXPECT_EQ(q[h.size() + 2].type, T::Int32);  // 2.10 arrays follow their length
    EXPECT_EQ(q[h.size() + 3].type, T::Int32Array);
  }
  // The dialog-only variants are no PDB argument in either procedure.
  for (const auto& d : procedure_table())
    for (bool v2 : {false, true})
      for (const auto& x : pdb2_params(d, v2)) EXPECT_NE(x.name, "variants") << d.name;
}

TEST(ProcedureTable, Gimp3ArgumentsAreTheHistoricOnesThenTheAppendedOnes) {
  for (Proc proc : {Proc::Generate, Proc::EditSelection, Proc::EditLayer}) {
    const ProcDecl& d = decl_of(proc);
    std::vector<std::string> got;
    for (const ArgDecl* a : gimp3_args(d)) got.push_back(a->name);
    auto want = names(historic(proc));
    want.erase(want.begin(), want.begin() + 3);  // run-mode, image, drawable(s)
    want.push_back("loras");
    want.push_back("lightning");
    if (proc != Proc::Generate) want.push_back("reference-layers");
    EXPECT_EQ(got, want) << d.name;
    // Appended arguments have defaults GIMP fills in: "" / off / none.
    for (const ArgDecl* a : gimp3_args(d)) {
      if (a->since == Since::Appended) {
        EXPECT_EQ(a->def, 0) << a->name;
      }
    }
  }
}

TEST(ProcedureTable, DefaultsAndFieldsRoundTrip) {
  Settings s;
  apply_defaults(decl_of(Proc::EditSelection), s);
  EXPECT_EQ(s.steps, 30);
  EXPECT_DOUBLE_EQ(s.true_cfg_scale, 4.0);
  EXPECT_EQ(s.seed, -1);
  EXPECT_DOUBLE_EQ(s.strength, 0.9);
  EXPECT_FALSE(s.lightning);
  EXPECT_EQ(s.variants, 1);
  apply_defaults(decompose_decl(), s);
  EXPECT_EQ(s.steps, 50);
  set_field(s, Field::Loras, "style:0.5");
  EXPECT_STREQ(string_field(s, Field::Loras), "style:0.5");
  set_field(s, Field::Lightning, 1.0);
  EXPECT_TRUE(s.lightning);
  set_layers(s, Field::References, {12, -1, 0, 14});
  EXPECT_EQ(layers_field(s, Field::References), (std::vector<int>{12, 14}));
  std::vector<int> many(20, 7);
  set_layers(s, Field::References, many);
  EXPECT_EQ(s.num_references, 10);
}

TEST(ParseLoras, NamesPathsAndStrengths) {
  std::vector<qwen::ipc::JobLora> l;
  ASSERT_EQ(parse_loras("name:0.8, other:-0.3 ,plain,/abs/x.safetensors:2", &l), "");
  ASSERT_EQ(l.size(), 4u);
  EXPECT_EQ(l[0].name, "name");
  EXPECT_FLOAT_EQ(l[0].strength, 0.8f);
  EXPECT_EQ(l[1].name, "other");
  EXPECT_FLOAT_EQ(l[1].strength, -0.3f);
  EXPECT_EQ(l[2].name, "plain");
  EXPECT_FLOAT_EQ(l[2].strength, 1.0f);
  EXPECT_EQ(l[3].name, "/abs/x.safetensors");
  EXPECT_FLOAT_EQ(l[3].strength, 2.0f);
  ASSERT_EQ(parse_loras("", &l), "");
  EXPECT_TRUE(l.empty());
  ASSERT_EQ(parse_loras(" , a ,", &l), "");
  EXPECT_EQ(l.size(), 1u);
}

TEST(ParseLoras, BadEntriesAreNamed) {
  std::vector<qwen::ipc::JobLora> l = {{"kept", 1}};
  auto err = parse_loras("good:0.5,style:strong", &l);
  EXPECT_NE(err.find("'style:strong'"), std::string::npos) << err;
  EXPECT_NE(err.find("must be a number"), std::string::npos) << err;
  EXPECT_EQ(l.size(), 1u);  // untouched on error
  err = parse_loras(":0.5", &l);
  EXPECT_NE(err.find("':0.5' has no name"), std::string::npos) << err;
  err = parse_loras("x:11", &l);
  EXPECT_NE(err.find("'x:11'"), std::string::npos) << err;
  EXPECT_NE(err.find("between -10 and 10"), std::string::npos) << err;
  err = parse_loras("sub/dir:1", &l);
  EXPECT_NE(err.find("'sub/dir:1'"), std::string::npos) << err;
  err = parse_loras("a,b,c,d,e,f,g,h,i", &l);
  EXPECT_NE(err.find("at most 8 LoRAs"), std::string::npos) << err;
  err = parse_loras("x:nan", &l);
  EXPECT_FALSE(err.empty());
}

TEST(ModelChoice, ByCapabilitiesAndByNameOnlyWhenUnknown) {
  qwen::ipc::ModelCaps t2i;
  t2i.known = true;
  t2i.can_generate = true;
  t2i.loras = true;
  qwen::ipc::ModelCaps edit = t2i;
  edit.can_generate = false;
  edit.can_edit = true;
  edit.max_references = 3;
  qwen::ipc::ModelCaps layered;
  layered.known = true;
  layered.can_decompose = true;
  const qwen::ipc::ModelCaps unknown;
  // Known caps win over the name: an edit model without "edit" in its name, and the reverse.
  EXPECT_TRUE(model_can_edit("my-finetune", "/models/my-finetune", edit));
  EXPECT_FALSE(model_can_edit("not-an-edit-model", "", t2i));
  EXPECT_TRUE(model_suits(Proc::EditLayer, "my-finetune", "", edit));
  EXPECT_FALSE(model_suits(Proc::Generate, "my-finetune", "", edit));
  EXPECT_TRUE(model_suits(Proc::EditSelection, "my-finetune", "", edit));
  EXPECT_TRUE(model_suits(Proc::EditSelection, "x", "", t2i));
  EXPECT_FALSE(model_suits(Proc::EditSelection, "x", "", layered));
  EXPECT_TRUE(model_suits(Proc::Decompose, "x", "", layered));
  EXPECT_FALSE(model_suits(Proc::Decompose, "x", "", t2i));
  // Unknown caps (an old daemon): the old guess by name.
  EXPECT_TRUE(model_can_edit("qwen-image-edit-2509", "", unknown));
  EXPECT_FALSE(model_can_edit("qwen-image", "", unknown));
  EXPECT_TRUE(model_suits(Proc::Generate, "qwen-image", "", unknown));
  // Reference layers: max_references - 1, none for unknown or non-edit models.
  EXPECT_EQ(reference_slots(Proc::EditLayer, edit), 2);
  EXPECT_EQ(reference_slots(Proc::EditSelection, edit), 2);
  EXPECT_EQ(reference_slots(Proc::Generate, edit), 0);
  EXPECT_EQ(reference_slots(Proc::EditLayer, t2i), 0);
  EXPECT_EQ(reference_slots(Proc::EditLayer, unknown), 0);
  edit.max_references = 10;
  EXPECT_EQ(reference_slots(Proc::EditLayer, edit), 9);
}
