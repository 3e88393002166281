// `qwen-image generate / img2img / inpaint` on the tiny model: PNG-exact results, output naming,
// progress lines and the error exits.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <functional>
#include <string>

#include "cli_harness.h"
#include "common/fixtures.h"
#include "common/st_writer.h"
#include "image/png.h"
#include "io/safetensors.h"

namespace fs = std::filesystem;
using qwen::test::fixture_path;

namespace {

using qwen::test::cli::max_diff;
using qwen::test::cli::Result;
using qwen::test::cli::run;

std::string tmp(const std::string& name) { return qwen::test::cli::out_path("t2i_cli_out", name); }

std::string model() { return "--model " + qwen::test::tiny_model_dir() + " --threads 2"; }

}  // namespace

TEST(Cli, GenerateMatchesReferencePng) {
  const auto out = tmp("t2i.png");
  fs::remove(out);
  auto r = run("generate " + model() +
               " --prompt 'A red bicycle leaning against a blue wall, watercolor'"
               " --true-cfg-scale 1 --width 96 --height 64 --steps 4 --seed 42"
               " --attention math --output " +  // the CUDA kernel choice: accepted, no-op on CPU
               out);
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_NE(r.output.find("step 4/4"), std::string::npos) << r.output;
  EXPECT_LE(max_diff(out, fixture_path("cases/pipeline_t2i_cfg1/output.png")), 1);
}

TEST(Cli, SeveralImagesAreNumbered) {
  const auto out = tmp("multi.png");
  for (int i = 0; i < 2; ++i) fs::remove(tmp("multi-" + std::to_string(i) + ".png"));
  auto r = run("generate " + model() +
               " --prompt 'a cat' --negative-prompt ' ' --num-images 2 --width 32 --height 32"
               " --steps 1 --quiet --output " +
               out);
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_FALSE(fs::exists(out));
  EXPECT_TRUE(fs::exists(tmp("multi-0.png")));
  EXPECT_TRUE(fs::exists(tmp("multi-1.png")));
  EXPECT_EQ(r.output.find("step "), std::string::npos);  // --quiet
}

TEST(Cli, InpaintMatchesReferencePng) {
  const auto out = tmp("inpaint.png");
  auto r = run("inpaint " + model() + " --prompt '一只橘猫坐在草地上' --true-cfg-scale 1" +
               " --image " + fixture_path("cases/pipeline_inpaint/image_0.png") + " --mask " +
               fixture_path("cases/pipeline_inpaint/mask.png") +
               " --width 96 --height 64 --strength 0.9 --steps 4 --seed 11 --output " + out);
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_LE(max_diff(out, fixture_path("cases/pipeline_inpaint/output.png")), 1);
}

TEST(Cli, BadInputsFailWithAMessage) {
  const auto out = tmp("never.png");
  struct Case {
    std::string args, expect;
  };
  const Case cases[] = {
      {"generate --prompt x --output " + out, "--model"},
      {"generate " + model() + " --output " + out, "--prompt"},
      {"generate " + model() + " --prompt x", "--output"},
      {"generate " + model() + " --prompt x --width -16 --output " + out, "width"},
      {"generate " + model() + " --prompt x --width 0 --output " + out, "width"},
      {"generate " + model() + " --prompt x --height 99999 --output " + out, "height"},
      {"generate " + model() + " --prompt x --steps 0 --output " + out, "steps"},
      {"generate " + model() + " --prompt x --true-cfg-scale -2 --output " + out, "CFG"},
      {"generate " + model() + " --prompt x --steps many --output " + out, "integer"},
      {"generate " + model() + " --prompt x --bogus --output " + out, "unknown option"},
      {"generate " + model() + " --prompt x --attention fastest --output " + out,
       "--attention must be auto, cudnn, flash, efficient or math, got 'fastest'"},
      {"generate " + model() + " --prompt x --attention flash --daemon --output " + out,
       "--attention applies"},
      {"generate --model /nonexistent --prompt x --output " + out, "does not exist"},
      {"generate " + model() + " --prompt x --output /nonexistent-dir/a.png", "cannot write"},
      {"img2img " + model() + " --prompt x --output " + out, "--image"},
      {"img2img " + model() + " --prompt x --image /nonexistent.png --output " + out,
       "input image"},
  };
  for (const auto& c : cases) {
    auto r = run(c.args);
    EXPECT_NE(r.code, 0) << c.args;
    EXPECT_NE(r.output.find(c.expect), std::string::npos) << c.args << "\n" << r.output;
  }
  EXPECT_FALSE(fs::exists(out));
}

TEST(Cli, EditWithTwoImagesMatchesReferencePng) {
  const auto out = tmp("edit.png");
  auto r = run("edit --model " + qwen::test::tiny_edit_model_dir() +
               " --threads 2 --prompt 'Put the object from picture 1 on the table in picture "
               "2，保持光照一致' --negative-prompt ' ' --image " +
               fixture_path("cases/pipeline_edit_plus/image_0.png") + " --image " +
               fixture_path("cases/pipeline_edit_plus/image_1.png") +
               " --width 80 --height 48 --steps 2 --seed 9 --vision-processor pil --output " + out);
  ASSERT_EQ(r.code, 0) << r.output;
  // The fixture was made with the PIL image processor: --vision-processor pil.
  EXPECT_LE(max_diff(out, fixture_path("cases/pipeline_edit_plus/output.png")), 1);
}

// --pipeline edit on the Edit-2509 model (whose model_index.json names Edit-Plus) runs the
// single-image QwenImageEditPipeline: the pipeline_edit fixture was made exactly that way.
TEST(Cli, EditPipelineOptionOverridesTheModelsDefault) {
  const auto out = tmp("edit-single.png");
  const std::string args = "edit --model " + qwen::test::tiny_edit_model_dir() +
                           " --threads 2 --prompt 'Make the sky purple' --negative-prompt ' '"
                           " --image " +
                           fixture_path("cases/pipeline_edit/image_0.png") +
                           " --width 64 --height 64 --steps 2 --seed 5 --quiet"
                           " --vision-processor pil --output " +
                           out;
  auto r = run(args + " --pipeline edit");
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_LE(max_diff(out, fixture_path("cases/pipeline_edit/output.png")), 1);
  // Without --pipeline the model's own pipeline (Edit-Plus) runs: another image.
  const auto out_plus = tmp("edit-default.png");
  r = run(args.substr(0, args.size() - out.size()) + out_plus);
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_GT(max_diff(out_plus, fixture_path("cases/pipeline_edit/output.png")), 1);
}

// --mask on edit: Edit-Inpaint; with --geometry exact the result is on the input's pixel grid.
TEST(Cli, EditWithMaskIsEditInpaint) {
  auto in = qwen::read_png(fixture_path("cases/pipeline_inpaint/image_0.png"));
  auto mask = qwen::read_png(fixture_path("cases/pipeline_inpaint/mask.png"));
  ASSERT_EQ(in.width, mask.width);
  const auto out = tmp("edit-inpaint.png");
  fs::remove(out);
  auto r = run("edit --model " + qwen::test::tiny_edit_model_dir() +
               " --threads 2 --prompt 'a cat' --true-cfg-scale 1 --image " +
               fixture_path("cases/pipeline_inpaint/image_0.png") + " --mask " +
               fixture_path("cases/pipeline_inpaint/mask.png") +
               " --geometry exact --strength 0.8 --steps 2 --seed 3 --output " + out);
  ASSERT_EQ(r.code, 0) << r.output;
  auto res = qwen::read_png(out);
  EXPECT_EQ(res.width, in.width);
  EXPECT_EQ(res.height, in.height);
}

TEST(Cli, EditOptionsAreChecked) {
  const auto out = tmp("never-edit.png");
  const std::string m = "edit --model " + qwen::test::tiny_edit_model_dir() + " --prompt x ";
  const std::string img = " --image " + fixture_path("cases/pipeline_inpaint/image_0.png");
  const std::string mask = " --mask " + fixture_path("cases/pipeline_inpaint/mask.png");
  struct Case {
    std::string args, expect;
  };
  const Case cases[] = {
      {m + img + " --pipeline sideways --output " + out, "--pipeline must be"},
      {m + img + " --geometry wobbly --output " + out, "--geometry must be"},
      {m + img + " --vision-processor fast --output " + out, "--vision-processor must be"},
      {m + img + " --vision-processor pil --daemon --output " + out, "--vision-processor applies"},
      {m + img + " --strength 0.5 --output " + out, "--strength applies"},
      {m + img + img + mask + " --output " + out, "exactly one --image"},
      {m + img + mask + " --pipeline edit-plus --output " + out, "not edit-plus"},
      {m + img + img + " --pipeline edit --output " + out, "edit-plus"},
      {m + img + " --mask " + fixture_path("cases/pipeline_edit/image_0.png") + " --output " + out,
       "differs from the image size"},
  };
  for (const auto& c : cases) {
    auto r = run(c.args);
    EXPECT_NE(r.code, 0) << c.args;
    EXPECT_NE(r.output.find(c.expect), std::string::npos) << c.args << "\n" << r.output;
  }
  EXPECT_FALSE(fs::exists(out));
}

namespace {

// A single-file copy of a fixture component, keys passed through `rename` (empty = dropped) and
// the values of the tensor named `perturb` negated (to tell the copy's weights apart).
void single_file(const std::string& src, const std::string& dst,
                 const std::function<std::string(const std::string&)>& rename,
                 const std::string& perturb = "") {
  const auto store = qwen::io::TensorStore::open(src);
  std::vector<qwen::test::StTensor> out;
  for (const auto& [name, ref] : store.all()) {
    const std::string n = rename(name);
    if (n.empty()) continue;
    qwen::test::StTensor t{n, qwen::io::dtype_name(ref.info->dtype), ref.info->shape, {}};
    const uint8_t* p = ref.file->data(*ref.info);
    t.bytes.assign(p, p + (ref.info->end - ref.info->begin));
    if (name == perturb) {  // negate every value: flip the sign bit (little-endian, top byte)
      const size_t es = qwen::io::dtype_size(ref.info->dtype);
      for (size_t i = es - 1; i < t.bytes.size(); i += es) t.bytes[i] ^= 0x80;
    }
    out.push_back(std::move(t));
  }
  qwen::test::write_file(dst, qwen::test::st_serialize(out));
}

}  // namespace

// --transformer / --text-encoder / --vae (issue #12): single files replace the folder's
// components. ComfyUI-style copies of the fixture's own weights give the reference image; a
// transformer file with other weights gives another image (the file is really used).
TEST(Cli, ComponentFilesReplaceTheFoldersComponents) {
  const std::string dir = qwen::test::tiny_model_dir();
  const auto tr = tmp("comfy_transformer.safetensors"), te = tmp("comfy_te.safetensors"),
             vae = tmp("comfy_vae.safetensors"), other = tmp("other_transformer.safetensors");
  single_file(dir + "/transformer", tr, [](const std::string& n) { return "model.diffusion_model." + n; });
  single_file(dir + "/text_encoder", te, [](const std::string& n) { return n; });
  single_file(dir + "/vae", vae, [](const std::string& n) { return n; });
  single_file(dir + "/transformer", other, [](const std::string& n) { return n; }, "proj_out.bias");
  const std::string job =
      " --prompt 'A red bicycle leaning against a blue wall, watercolor'"
      " --true-cfg-scale 1 --width 96 --height 64 --steps 4 --seed 42 --quiet --output ";
  const auto out = tmp("files.png"), out_other = tmp("files_other.png");
  fs::remove(out);
  fs::remove(out_other);
  auto r = run("generate " + model() + " --transformer " + tr + " --text-encoder " + te +
               " --vae " + vae + job + out);
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_LE(max_diff(out, fixture_path("cases/pipeline_t2i_cfg1/output.png")), 1);
  r = run("generate " + model() + " --transformer " + other + job + out_other);
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_GT(max_diff(out_other, out), 2);

  // Without a folder, the vision-capable encoder cannot tell base from edit: asked, not guessed.
  r = run("generate --transformer " + tr + " --text-encoder " + te + " --vae " + vae + job +
          tmp("never.png"));
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.output.find("--model-type"), std::string::npos) << r.output;
  // With --daemon the files belong in the daemon's config.
  r = run("generate --daemon --transformer " + tr + job + tmp("never.png"));
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.output.find("daemon's config"), std::string::npos) << r.output;
  // A file of the wrong kind names the file.
  r = run("generate " + model() + " --transformer " + vae + job + tmp("never.png"));
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.output.find(vae), std::string::npos) << r.output;
  EXPECT_FALSE(fs::exists(tmp("never.png")));
}
