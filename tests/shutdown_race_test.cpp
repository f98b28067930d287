#define BOOST_TEST_MODULE shutdown_race_test
#include <boost/test/unit_test.hpp>

#include <logsync/logsync.hpp>

BOOST_AUTO_TEST_CASE(placeholder) { BOOST_TEST(logsync::kFrameHeaderBytes == 16U); }
