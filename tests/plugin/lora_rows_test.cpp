// The LoRA picker's rows and the one `loras` string (plugin/common/lora_rows.h, issue #14): the
// dialogs split the string into rows of the daemon's LoRAs with strengths and compose it back.
#include "lora_rows.h"

#include <gtest/gtest.h>

using namespace qwen::plugin;

namespace {
const std::vector<std::string> kDaemon = {"style-a", "b", "detail", "Qwen-Image-Lightning-8steps"};
}

TEST(LoraRows, SplitsNamesWithStrengthsIntoRowsAndComposesTheSameString) {
  LoraPick p;
  ASSERT_EQ(split_loras("style-a:0.8,b:-0.3", kDaemon, &p), "");
  ASSERT_EQ(p.rows.size(), 2u);
  EXPECT_EQ(p.rows[0], (LoraRow{"style-a", 0.8}));
  EXPECT_EQ(p.rows[1], (LoraRow{"b", -0.3}));
  EXPECT_EQ(p.other, "");
  EXPECT_EQ(compose_loras(p), "style-a:0.8,b:-0.3");
  // Strength 1 when omitted; spaces and ".safetensors" are the same LoRA.
  ASSERT_EQ(split_loras(" detail , b.safetensors:2 ,", kDaemon, &p), "");
  ASSERT_EQ(p.rows.size(), 2u);
  EXPECT_EQ(p.rows[0], (LoraRow{"detail", 1.0}));
  EXPECT_EQ(p.rows[1], (LoraRow{"b", 2.0}));
  EXPECT_EQ(compose_loras(p), "detail:1,b:2");
  ASSERT_EQ(split_loras("", kDaemon, &p), "");
  EXPECT_TRUE(p.rows.empty());
  EXPECT_EQ(compose_loras(p), "");
}

TEST(LoraRows, WhatTheRowsCannotShowStaysInTheTextAsWritten) {
  LoraPick p;
  // A 4th LoRA, an absolute path, a name the daemon does not list, a strength beyond -2..2 and
  // one finer than the widget's 0.01 steps.
  ASSERT_EQ(split_loras("style-a:0.5,b,/home/me/x.safetensors:0.7,detail:-1,"
                        "Qwen-Image-Lightning-8steps:1,unknown:0.2",
                        kDaemon, &p),
            "");
  ASSERT_EQ(p.rows.size(), 3u);
  EXPECT_EQ(p.rows[2], (LoraRow{"detail", -1.0}));
  EXPECT_EQ(p.other, "/home/me/x.safetensors:0.7,Qwen-Image-Lightning-8steps:1,unknown:0.2");
  EXPECT_EQ(compose_loras(p),
            "style-a:0.5,b:1,detail:-1,/home/me/x.safetensors:0.7,Qwen-Image-Lightning-8steps:1,"
            "unknown:0.2");
  ASSERT_EQ(split_loras("b:5, style-a:0.125, detail:-2", kDaemon, &p), "");
  ASSERT_EQ(p.rows.size(), 1u);
  EXPECT_EQ(p.rows[0], (LoraRow{"detail", -2.0}));
  EXPECT_EQ(p.other, "b:5,style-a:0.125");
  // Without the daemon's list (an older daemon) every entry stays in the text.
  ASSERT_EQ(split_loras("style-a:0.8,b:-0.3", {}, &p), "");
  EXPECT_TRUE(p.rows.empty());
  EXPECT_EQ(p.other, "style-a:0.8,b:-0.3");
}

TEST(LoraRows, TextThatDoesNotParseStaysWholeAndTheErrorNamesTheEntry) {
  LoraPick p;
  EXPECT_EQ(split_loras("style-a:0.8,b:strong", kDaemon, &p),
            "LoRA entry 'b:strong': the strength after ':' must be a number (as in "
            "\"name:0.8\")");
  EXPECT_TRUE(p.rows.empty());
  EXPECT_EQ(p.other, "style-a:0.8,b:strong");
  EXPECT_EQ(compose_loras(p), "style-a:0.8,b:strong");
  EXPECT_NE(split_loras("b:11", kDaemon, &p).find("'b:11': the strength must be between"),
            std::string::npos);
  EXPECT_NE(split_loras("dir/x:1", kDaemon, &p).find("'dir/x:1'"), std::string::npos);
  EXPECT_EQ(p.other, "dir/x:1");
}

TEST(LoraRows, RowsComposeWithTheText) {
  LoraPick p;
  p.rows = {{"style-a", 0.75}, {"", 1.0}, {"b", -0.3}};  // a row set to None is left out
  p.other = " /abs/c.safetensors:0.5 ";
  EXPECT_EQ(compose_loras(p), "style-a:0.75,b:-0.3,/abs/c.safetensors:0.5");
  LoraPick back;
  ASSERT_EQ(split_loras(compose_loras(p), kDaemon, &back), "");
  EXPECT_EQ(back.rows, (std::vector<LoraRow>{{"style-a", 0.75}, {"b", -0.3}}));
  EXPECT_EQ(back.other, "/abs/c.safetensors:0.5");
  EXPECT_EQ(format_lora_strength(1.0), "1");
  EXPECT_EQ(format_lora_strength(0.8), "0.8");
  EXPECT_EQ(format_lora_strength(-0.30000001), "-0.3");
  EXPECT_EQ(format_lora_strength(-0.001), "0");
  EXPECT_EQ(format_lora_strength(1.999), "2");
}

TEST(LoraRows, ListLabelsMarkLightning) {
  std::vector<qwen::ipc::LoraInfo> loras(2);
  loras[0].name = "style-a";
  loras[1].name = "Qwen-Image-Lightning-8steps";
  loras[1].lightning = true;
  EXPECT_EQ(lora_names(loras),
            (std::vector<std::string>{"style-a", "Qwen-Image-Lightning-8steps"}));
  EXPECT_EQ(lora_choice_label(loras[0]), "style-a");
  EXPECT_EQ(lora_choice_label(loras[1]), "Qwen-Image-Lightning-8steps (Lightning)");
}
