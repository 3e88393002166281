#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <nlohmann/json.hpp>

#include "image/convert.h"
#include "image/geometry.h"
#include "image/png.h"
#include "image/resample.h"
#include "test_util.h"

using namespace qwen;
using qwen::test::data_path;
using qwen::test::fixture;

namespace {
ResampleFilter filter_named(const std::string& s) {
  if (s == "bicubic") return ResampleFilter::Bicubic;
  if (s == "lanczos") return ResampleFilter::Lanczos;
  if (s == "bilinear") return ResampleFilter::Bilinear;
  if (s == "box") return ResampleFilter::Box;
  if (s == "hamming") return ResampleFilter::Hamming;
  throw std::runtime_error("unknown filter " + s);
}
}  // namespace

// Byte-exact against PIL Image.resize (shrink, enlarge, one axis only, mixed, 1x1; gray, RGB,
// RGBA through premultiplied alpha). The committed PNGs were made with Pillow 11.3: the
// horizontal-first order (PillowOrder::Pillow12).
TEST(Resize, MatchesPil12ByteExactly) {
  std::ifstream f(data_path("resize/manifest.json"));
  const auto m = nlohmann::json::parse(f);
  ASSERT_GE(m.size(), 40u);
  for (const auto& e : m) {
    const std::string name = e["expected"];
    SCOPED_TRACE(name);
    const ImageU8 src = read_png(data_path("resize/" + e["source"].get<std::string>()));
    const ImageU8 expected = read_png(data_path("resize/" + name));
    const ImageU8 got =
        resize(src, e["width"], e["height"], filter_named(e["filter"]), PillowOrder::Pillow12);
    EXPECT_EQ(qwen::test::count_diff(got, expected), 0u);
  }
}

// The default order against the Pillow of the live reference (tests/reference/requirements.txt,
// Pillow 13), on the manifest's sources and sizes plus shapes where Pillow 13 runs the vertical
// pass first (and the order matters): the PNGs are made now by the installed Pillow.
TEST(Resize, MatchesTheInstalledPillowByteExactly) {
  const std::string py = std::string(QWEN_SOURCE_DIR) + "/.venv/bin/python";
  if (::access(py.c_str(), X_OK) != 0) {
    if (std::getenv("CI")) FAIL() << py << " is missing: run installers/setup.sh";
    GTEST_SKIP() << py << " is missing (installers/setup.sh makes it)";
  }
  char dir_tmpl[] = "/tmp/qwen-resize-XXXXXX";
  ASSERT_NE(::mkdtemp(dir_tmpl), nullptr);
  const std::string dir = dir_tmpl;
  std::ifstream f(data_path("resize/manifest.json"));
  auto m = nlohmann::json::parse(f);
  // Vertical-first shapes of every source (height shrinks by more than 2x the width's change).
  for (const char* src : {"src_rgb.png", "src_rgba.png", "src_gray.png"})
    for (const char* filter : {"bicubic", "lanczos", "bilinear", "box", "hamming"})
      for (const auto& wh : {std::pair{90, 11}, std::pair{61, 17}, std::pair{110, 30}})
        m.push_back({{"source", src}, {"filter", filter}, {"width", wh.first},
                     {"height", wh.second}, {"expected", ""}});
  nlohmann::json jobs = nlohmann::json::array();
  for (size_t i = 0; i < m.size(); ++i)
    jobs.push_back({data_path("resize/" + m[i]["source"].get<std::string>()), m[i]["filter"],
                    m[i]["width"], m[i]["height"], dir + "/" + std::to_string(i) + ".png"});
  std::ofstream(dir + "/jobs.json") << jobs.dump();
  const std::string script =
      "import json, sys\n"
      "from PIL import Image\n"
      "F = dict(bicubic=Image.BICUBIC, lanczos=Image.LANCZOS, bilinear=Image.BILINEAR, "
      "box=Image.BOX, hamming=Image.HAMMING)\n"
      "for src, flt, w, h, out in json.load(open(sys.argv[1])):\n"
      "    Image.open(src).resize((w, h), F[flt]).save(out)\n"
      "import PIL; print(PIL.__version__)\n";
  std::ofstream(dir + "/resize.py") << script;
  FILE* p = ::popen((py + " " + dir + "/resize.py " + dir + "/jobs.json 2>&1").c_str(), "r");
  ASSERT_NE(p, nullptr);
  std::string out;
  char buf[256];
  while (size_t n = std::fread(buf, 1, sizeof buf, p)) out.append(buf, n);
  ASSERT_EQ(::pclose(p), 0) << out;
  ASSERT_EQ(out.substr(0, 3), "13.") << "the reference's Pillow is " << out;
  size_t vertical_first_differs = 0;
  for (size_t i = 0; i < m.size(); ++i) {
    SCOPED_TRACE(m[i].dump());
    const ImageU8 src = read_png(data_path("resize/" + m[i]["source"].get<std::string>()));
    const ImageU8 expected = read_png(dir + "/" + std::to_string(i) + ".png");
    const auto filter = filter_named(m[i]["filter"]);
    const ImageU8 got = resize(src, m[i]["width"], m[i]["height"], filter);
    EXPECT_EQ(qwen::test::count_diff(got, expected), 0u);
    vertical_first_differs +=
        qwen::test::count_diff(
            resize(src, m[i]["width"], m[i]["height"], filter, PillowOrder::Pillow12), expected) >
        0;
  }
  // The added shapes exercise the order: the Pillow 12 order would miss several of them.
  EXPECT_GE(vertical_first_differs, 10u);
  for (size_t i = 0; i <= m.size(); ++i) std::remove((dir + "/" + std::to_string(i) + ".png").c_str());
  std::remove((dir + "/jobs.json").c_str());
  std::remove((dir + "/resize.py").c_str());
  ::rmdir(dir.c_str());
}

// The Edit pipelines' condition images: calculate_dimensions + PIL LANCZOS of the input PNGs.
TEST(Resize, ReproducesEditConditionImages) {
  struct Case {
    std::string dir, image, condition;
    double area;
  };
  const Case cases[] = {
      {"text_encoder_edit", "image_0.png", "condition_image_0.png", 1024.0 * 1024.0},
      {"text_encoder_edit_plus", "image_0.png", "condition_image_0.png", 384.0 * 384.0},
      {"text_encoder_edit_plus", "image_1.png", "condition_image_1.png", 384.0 * 384.0},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.dir + "/" + c.condition);
    const ImageU8 in = read_png(fixture("cases/" + c.dir + "/" + c.image));
    const ImageU8 expected = read_png(fixture("cases/" + c.dir + "/" + c.condition));
    const Size s = calculate_dimensions(c.area, in.width, in.height);
    EXPECT_EQ(s.width, expected.width);
    EXPECT_EQ(s.height, expected.height);
    const ImageU8 got = resize(in, s.width, s.height, ResampleFilter::Lanczos);
    EXPECT_EQ(qwen::test::count_diff(got, expected), 0u);
  }
}

TEST(Resize, SameSizeIsACopyAndBadSizesThrow) {
  ImageU8 img(5, 4, 3);
  for (size_t i = 0; i < img.pixels.size(); ++i) img.pixels[i] = uint8_t(i * 11);
  EXPECT_EQ(resize(img, 5, 4, ResampleFilter::Lanczos).pixels, img.pixels);
  EXPECT_THROW(resize(img, 0, 4, ResampleFilter::Bicubic), ImageError);
  EXPECT_THROW(resize(img, 3, -1, ResampleFilter::Bicubic), ImageError);
  EXPECT_THROW(resize(ImageU8(), 3, 3, ResampleFilter::Bicubic), ImageError);
}

TEST(Convert, GrayRgbAndAlphaLikePil) {
  ImageU8 rgba(3, 1, 4);
  rgba.pixels = {10, 200, 30, 0, 255, 255, 255, 128, 90, 60, 30, 255};
  // PIL convert("L"): (R*19595 + G*38470 + B*7471 + 0x8000) >> 16
  const ImageU8 g = to_gray(rgba);
  EXPECT_EQ(g.pixels, (std::vector<uint8_t>{124, 255, 66}));
  EXPECT_EQ(to_rgb(rgba).pixels, (std::vector<uint8_t>{10, 200, 30, 255, 255, 255, 90, 60, 30}));
  // alpha 0 -> white, opaque -> unchanged, white at half alpha over white -> white.
  EXPECT_EQ(composite_on_white(rgba).pixels,
            (std::vector<uint8_t>{255, 255, 255, 255, 255, 255, 90, 60, 30}));
  ImageU8 half(1, 1, 4);
  half.pixels = {0, 0, 0, 128};
  // PIL: Image.alpha_composite(white, (0,0,0,128)) -> (127,127,127)
  EXPECT_EQ(composite_on_white(half).pixels, (std::vector<uint8_t>{127, 127, 127}));
  const ImageU8 pm = premultiply_alpha(rgba);
  EXPECT_EQ(pm.pixels, (std::vector<uint8_t>{0, 0, 0, 0, 128, 128, 128, 128, 90, 60, 30, 255}));
  EXPECT_EQ(unpremultiply_alpha(pm).pixels,
            (std::vector<uint8_t>{0, 0, 0, 0, 255, 255, 255, 128, 90, 60, 30, 255}));
  EXPECT_THROW(premultiply_alpha(ImageU8(2, 2, 3)), ImageError);
}
