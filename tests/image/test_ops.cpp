#include "image/ops.h"
#include "test_util.h"

using namespace qwen;

TEST(Ops, CropAndPadEdge) {
  ImageU8 img(4, 3, 2);
  for (int y = 0; y < 3; ++y)
    for (int x = 0; x < 4; ++x) img.at(x, y, 0) = uint8_t(10 * y + x), img.at(x, y, 1) = 200;
  const ImageU8 c = crop(img, 1, 1, 2, 2);
  EXPECT_EQ(c.pixels, (std::vector<uint8_t>{11, 200, 12, 200, 21, 200, 22, 200}));
  const ImageU8 p = pad_edge(img, 6, 5, 1, 2);
  EXPECT_EQ(p.at(0, 0, 0), 0);                        // top-left corner replicates (0,0)
  EXPECT_EQ(p.at(5, 4, 0), 23);                       // bottom-right replicates (3,2)
  EXPECT_EQ(p.at(2, 3, 0), 11);                       // interior shifted by (1,2)
  EXPECT_EQ(crop(p, 1, 2, 4, 3).pixels, img.pixels);  // crop undoes the padding
  EXPECT_THROW(crop(img, 3, 0, 2, 1), ImageError);
  EXPECT_THROW(crop(img, 0, 0, 0, 1), ImageError);
  EXPECT_THROW(pad_edge(img, 4, 3, 1, 0), ImageError);
}
