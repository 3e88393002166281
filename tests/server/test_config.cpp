// daemon.conf / qwen-imaged command line (daemon/server/config.cpp): per-model component files.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "config_harness.h"
#include "server/config.h"

using qwen::server::DaemonConfig;

using qwen::server::test::parse;
using qwen::server::test::write_conf;

TEST(DaemonConfig, ComponentFilesBelongToTheModelAboveThem) {
  const std::string conf = write_conf(
      "model = /data/Qwen-Image\n"
      "transformer = /data/comfy/qwen_image_fp8_e4m3fn.safetensors\n"
      "model = comfy-edit=\n"
      "transformer = /data/comfy/qwen_image_edit_2511_bf16.safetensors\n"
      "text_encoder = /data/comfy/qwen_2.5_vl_7b.safetensors\n"
      "vae = /data/comfy/qwen_image_vae.safetensors\n"
      "model_type = qwen-image-edit-2511\n");
  DaemonConfig cfg;
  ASSERT_EQ(parse({"--config", conf}, &cfg), "");
  ::unlink(conf.c_str());
  ASSERT_EQ(cfg.models.size(), 2u);
  EXPECT_EQ(cfg.models[0].name, "Qwen-Image");
  EXPECT_EQ(cfg.models[0].dir, "/data/Qwen-Image");
  EXPECT_EQ(cfg.models[0].transformer, "/data/comfy/qwen_image_fp8_e4m3fn.safetensors");
  EXPECT_EQ(cfg.models[0].vae, "");
  EXPECT_EQ(cfg.models[1].name, "comfy-edit");
  EXPECT_EQ(cfg.models[1].dir, "");
  EXPECT_EQ(cfg.models[1].text_encoder, "/data/comfy/qwen_2.5_vl_7b.safetensors");
  EXPECT_EQ(cfg.models[1].vae, "/data/comfy/qwen_image_vae.safetensors");
  EXPECT_EQ(cfg.models[1].model_type, "qwen-image-edit-2511");
}

TEST(DaemonConfig, CommandLineFilesApplyToTheLastModel) {
  DaemonConfig cfg;
  ASSERT_EQ(parse({"--no-config", "--model", "a=", "--transformer", "/t.safetensors",
                   "--text-encoder", "/te.safetensors", "--vae", "/v.safetensors",
                   "--model-type", "qwen-image"},
                  &cfg),
            "");
  ASSERT_EQ(cfg.models.size(), 1u);
  EXPECT_EQ(cfg.models[0].transformer, "/t.safetensors");
  EXPECT_EQ(cfg.models[0].model_type, "qwen-image");
}

TEST(DaemonConfig, IncompleteOrMisplacedFilesAreErrors) {
  std::string conf = write_conf("transformer = /t.safetensors\nmodel = /data/Qwen-Image\n");
  DaemonConfig cfg;
  std::string e = parse({"--config", conf}, &cfg);
  ::unlink(conf.c_str());
  EXPECT_NE(e.find(":1:"), std::string::npos) << e;
  EXPECT_NE(e.find("must follow the 'model =' line"), std::string::npos) << e;

  conf = write_conf("model = bare=\ntransformer = /t.safetensors\n");
  DaemonConfig cfg2;
  e = parse({"--config", conf}, &cfg2);
  ::unlink(conf.c_str());
  EXPECT_NE(e.find("model 'bare' has no folder"), std::string::npos) << e;
}

// The CUDA attention kernel: `attention =` in the file, --attention on the command line (wins),
// and a clear error naming the line for an unknown kernel.
TEST(DaemonConfig, AttentionKernelFromFileAndCommandLine) {
  std::string conf = write_conf("model = /data/Qwen-Image\nattention = cudnn\n");
  DaemonConfig cfg;
  ASSERT_EQ(parse({"--config", conf}, &cfg), "");
  EXPECT_EQ(cfg.attention, "cudnn");
  DaemonConfig cfg2;
  ASSERT_EQ(parse({"--config", conf, "--attention", "flash"}, &cfg2), "");
  EXPECT_EQ(cfg2.attention, "flash");
  ::unlink(conf.c_str());

  conf = write_conf("model = /data/Qwen-Image\nattention = fastest\n");
  DaemonConfig cfg3;
  const std::string e = parse({"--config", conf}, &cfg3);
  ::unlink(conf.c_str());
  EXPECT_NE(e.find(":2:"), std::string::npos) << e;
  EXPECT_NE(e.find("attention must be auto, cudnn, flash, efficient or math"), std::string::npos)
      << e;
}

// LoRA folders (issue #14): `lora_dir` lines and --lora-dir add up, in order; lora_mode is checked.
TEST(DaemonConfig, LoraDirsAndMode) {
  const std::string conf = write_conf(
      "model = /data/Qwen-Image\n"
      "lora_dir = /data/loras\n"
      "lora_dir = /data/more-loras/\n"
      "lora_mode = merge\n");
  DaemonConfig cfg;
  ASSERT_EQ(parse({"--config", conf, "--lora-dir", "/srv/loras"}, &cfg), "");
  EXPECT_EQ(cfg.lora_dirs,
            (std::vector<std::string>{"/data/loras", "/data/more-loras/", "/srv/loras"}));
  EXPECT_EQ(cfg.lora_mode, "merge");
  DaemonConfig bad;
  const std::string e = parse({"--config", conf, "--lora-mode", "fused"}, &bad);
  ::unlink(conf.c_str());
  EXPECT_NE(e.find("lora_mode must be side or merge"), std::string::npos) << e;
}

// fp8 tensor-core matmuls (issues #13/#15): `fp8_matmul` / --fp8-matmul, the value checked.
TEST(DaemonConfig, Fp8Matmul) {
  const std::string conf = write_conf(
      "model = /data/Qwen-Image\n"
      "fp8_matmul = off\n");
  DaemonConfig cfg;
  ASSERT_EQ(parse({"--config", conf}, &cfg), "");
  EXPECT_EQ(cfg.fp8_matmul, "off");
  DaemonConfig cli;
  ASSERT_EQ(parse({"--config", conf, "--fp8-matmul", "on"}, &cli), "");
  EXPECT_EQ(cli.fp8_matmul, "on");
  DaemonConfig bad;
  const std::string e = parse({"--config", conf, "--fp8-matmul", "fast"}, &bad);
  ::unlink(conf.c_str());
  EXPECT_NE(e.find("fp8_matmul must be auto, on or off, got 'fast'"), std::string::npos) << e;
}
