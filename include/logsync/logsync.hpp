#pragma once
/// logsync: a header-only, segmented, append-only commit log.
/// Include this header for everything.

#include <logsync/codec.hpp>
#include <logsync/config.hpp>
#include <logsync/error.hpp>
#include <logsync/format.hpp>
#include <logsync/index.hpp>
#include <logsync/log.hpp>
#include <logsync/log_reader.hpp>
#include <logsync/record.hpp>
#include <logsync/segment.hpp>
#include <logsync/scan.hpp>
#include <logsync/segment_set.hpp>
#include <logsync/snapshot.hpp>
#include <logsync/stats.hpp>
#include <logsync/store.hpp>
#include <logsync/sync.hpp>
#include <logsync/verify.hpp>
#include <logsync/version.hpp>
