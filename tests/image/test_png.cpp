#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "image/png.h"
#include "test_util.h"

using namespace qwen;
using qwen::test::data_path;

namespace {

nlohmann::json manifest(const std::string& rel) {
  std::ifstream f(data_path(rel));
  return nlohmann::json::parse(f);
}

template <typename Fn>
std::string error_of(Fn&& fn) {
  try {
    fn();
  } catch (const ImageError& e) {
    return e.what();
  }
  return "<no ImageError>";
}

}  // namespace

// Every layout of png/manifest.json decodes to exactly what PIL (+ convert) gives.
TEST(Png, DecodesAllLayoutsLikePil) {
  const auto m = manifest("png/manifest.json");
  ASSERT_GE(m.size(), 10u);
  for (const auto& e : m) {
    SCOPED_TRACE(e["file"].get<std::string>());
    const ImageU8 img = read_png(data_path("png/" + e["file"].get<std::string>()));
    EXPECT_EQ(img.width, e["width"].get<int>());
    EXPECT_EQ(img.height, e["height"].get<int>());
    EXPECT_EQ(img.channels, e["channels"].get<int>());
    const auto raw = qwen::test::read_bytes(data_path("png/" + e["raw"].get<std::string>()));
    EXPECT_EQ(img.pixels, raw);
  }
}

TEST(Png, Reads16BitSamples) {
  const auto m = manifest("png/manifest.json");
  int checked = 0;
  for (const auto& e : m) {
    if (!e.contains("raw16")) continue;
    SCOPED_TRACE(e["file"].get<std::string>());
    const ImageU16 img = read_png16(data_path("png/" + e["file"].get<std::string>()));
    EXPECT_EQ(img.channels, e["channels16"].get<int>());
    const auto raw = qwen::test::read_bytes(data_path("png/" + e["raw16"].get<std::string>()));
    ASSERT_EQ(raw.size(), img.pixels.size() * 2);
    EXPECT_EQ(std::memcmp(raw.data(), img.pixels.data(), raw.size()), 0);
    ++checked;
  }
  EXPECT_EQ(checked, 3);
  // 8-bit sources are widened by 257.
  const ImageU16 w = read_png16(data_path("png/rgb8.png"));
  const ImageU8 n = read_png(data_path("png/rgb8.png"));
  ASSERT_EQ(w.pixels.size(), n.pixels.size());
  for (size_t i = 0; i < n.pixels.size(); ++i) ASSERT_EQ(w.pixels[i], n.pixels[i] * 257);
}

TEST(Png, WriteReadRoundTripAllChannelCounts) {
  const auto dir = std::filesystem::temp_directory_path() / "qwen_test_png";
  std::filesystem::create_directories(dir);
  for (int c = 1; c <= 4; ++c) {
    ImageU8 img(17, 9, c);
    for (size_t i = 0; i < img.pixels.size(); ++i) img.pixels[i] = uint8_t(i * 37 + c);
    const std::string path = (dir / ("rt" + std::to_string(c) + ".png")).string();
    write_png(path, img);
    const ImageU8 back = read_png(path);
    if (c == 2) {  // gray + alpha comes back as RGBA
      ASSERT_EQ(back.channels, 4);
      for (size_t p = 0; p < size_t(17 * 9); ++p) {
        EXPECT_EQ(back.pixels[p * 4], img.pixels[p * 2]);
        EXPECT_EQ(back.pixels[p * 4 + 2], img.pixels[p * 2]);
        EXPECT_EQ(back.pixels[p * 4 + 3], img.pixels[p * 2 + 1]);
      }
    } else {
      EXPECT_EQ(back.channels, c);
      EXPECT_EQ(back.pixels, img.pixels);
    }
    // In-memory encode/decode gives the same pixels.
    const auto bytes = encode_png(img);
    EXPECT_TRUE(is_png(bytes.data(), bytes.size()));
    EXPECT_EQ(decode_png(bytes.data(), bytes.size()).pixels, back.pixels);
  }
  std::filesystem::remove_all(dir);
}

TEST(Png, ReadsFixtureImages) {
  const ImageU8 img = read_png(qwen::test::fixture("cases/vae/image.png"));
  EXPECT_EQ(img.width, 96);
  EXPECT_EQ(img.height, 64);
  EXPECT_EQ(img.channels, 3);
  const ImageU8 mask = read_png(qwen::test::fixture("cases/pipeline_inpaint/mask.png"));
  EXPECT_EQ(mask.channels, 1);
}

TEST(Png, ClearErrors) {
  EXPECT_NE(error_of([] {
              read_png("/nonexistent/dir/missing.png");
            }).find("/nonexistent/dir/missing.png: cannot open image file"),
            std::string::npos);
  const std::string not_png = data_path("png/manifest.json");
  EXPECT_NE(error_of([&] { read_png(not_png); }).find("not a PNG file"), std::string::npos);

  auto bytes = qwen::test::read_bytes(data_path("png/rgb8.png"));
  for (size_t keep : {size_t(8), size_t(20), bytes.size() / 2, bytes.size() - 13}) {
    SCOPED_TRACE(keep);
    const std::string msg = error_of([&] { decode_png(bytes.data(), keep, "cut.png"); });
    EXPECT_NE(msg.find("cut.png: broken PNG"), std::string::npos) << msg;
  }
  // Corrupted compressed data (CRC of a chunk broken).
  auto bad = bytes;
  bad[40] ^= 0xFF;
  EXPECT_NE(error_of([&] { decode_png(bad.data(), bad.size(), "bad.png"); }).find("bad.png"),
            std::string::npos);
  EXPECT_NE(error_of([] { decode_png(nullptr, 0, "empty"); }).find("not a PNG"), std::string::npos);

  ImageU8 img(4, 4, 3, 7);
  const std::string msg = error_of([&] { write_png("/nonexistent/dir/out.png", img); });
  EXPECT_NE(msg.find("/nonexistent/dir/out.png: cannot create output file"), std::string::npos)
      << msg;
  ImageU8 broken(4, 4, 3);
  broken.pixels.resize(5);
  EXPECT_NE(error_of([&] { encode_png(broken); }).find("pixel buffer"), std::string::npos);
  ImageU8 five(2, 2, 5);
  EXPECT_NE(error_of([&] { encode_png(five); }).find("channel count 5"), std::string::npos);
  EXPECT_NE(error_of([&] { encode_png(ImageU8()); }).find("empty image"), std::string::npos);
}
