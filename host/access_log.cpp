#include "access_log.hpp"

#include <integration/core/utf8.hpp>

#include <integration/core/time.hpp>

#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <mutex>
#include <string>
#include <thread>

namespace integration::host {
namespace {

// Lines gather in memory and reach stderr in one write per flush: at most every 50 ms, when
// 64 KiB are waiting, and at once for host events. A write and a flush per request cost more
// than answering /healthz.
class sink {
public:
    sink() : flusher_([this] { loop(); }) {}

    ~sink() {
        {
            std::lock_guard lock(mutex_);
            stopping_ = true;
        }
        cv_.notify_one();
        flusher_.join();
        flush_pending();
    }

    void write(std::string const& line, bool now) {
        std::unique_lock lock(mutex_);
        pending_ += line;
        if (now || pending_.size() >= 64 * 1024) {
            std::string out;
            out.swap(pending_);
            lock.unlock();
            emit(out);
        }
    }

private:
    void loop() {
        std::unique_lock lock(mutex_);
        while (!stopping_) {
            cv_.wait_for(lock, std::chrono::milliseconds(50));
            if (pending_.empty()) continue;
            std::string out;
            out.swap(pending_);
            lock.unlock();
            emit(out);
            lock.lock();
        }
    }

    void flush_pending() {
        std::string out;
        {
            std::lock_guard lock(mutex_);
            out.swap(pending_);
        }
        emit(out);
    }

    void emit(std::string const& text) {
        if (text.empty()) return;
        std::lock_guard lock(emit_mutex_);  // lines of two flushes never interleave
        std::fwrite(text.data(), 1, text.size(), stderr);
        std::fflush(stderr);
    }

    std::mutex mutex_;
    std::mutex emit_mutex_;
    std::condition_variable cv_;
    std::string pending_;
    bool stopping_ = false;
    std::thread flusher_;  // last: starts once the members above exist
};

sink& out() {
    static sink s;
    return s;
}

// Appends `text` as a JSON string: quotes, backslashes and control characters escaped.
void append_string(std::string& line, std::string_view text) {
    static constexpr char hex[] = "0123456789abcdef";
    line += '"';
    for (std::size_t i = 0; i < text.size();) {
        auto const c = static_cast<unsigned char>(text[i]);
        if (c >= 0x80) {
            // A line is JSON, so UTF-8: a byte that starts no well-formed sequence (a raw byte in a
            // request target) is written as U+FFFD.
            auto n = utf8_sequence(text, i);
            line += n ? text.substr(i, n) : std::string_view("\xef\xbf\xbd");
            i += n ? n : 1;
            continue;
        }
        if (c == '"' || c == '\\') {
            line += '\\';
            line += static_cast<char>(c);
        } else if (c < 0x20) {
            line += "\\u00";
            line += hex[c >> 4];
            line += hex[c & 15];
        } else {
            line += static_cast<char>(c);
        }
        ++i;
    }
    line += '"';
}

void append_field(std::string& line, std::string_view name, std::string_view text) {
    line += ",\"";
    line += name;
    line += "\":";
    append_string(line, text);
}

std::string start_line() {
    std::string line;
    line.reserve(256);
    line += "{\"time\":";
    append_string(line, format_time(std::chrono::system_clock::now()));
    return line;
}

}  // namespace

void log_access(access_entry const& e) {
    auto line = start_line();
    append_field(line, "method", e.method);
    append_field(line, "path", e.target.substr(0, e.target.find('?')));
    auto us = std::chrono::duration_cast<std::chrono::microseconds>(e.latency).count();
    // Integers: log readers dislike exponent forms.
    line += ",\"status\":" + std::to_string(e.status) + ",\"latencyMs\":" + std::to_string(us / 1000) +
            ",\"latencyUs\":" + std::to_string(us);
    append_field(line, "traceId", e.trace_id);
    append_field(line, "tenant", e.tenant);
    line += "}\n";
    out().write(line, false);
}

void log_event(std::string_view level, std::string_view message) {
    auto line = start_line();
    append_field(line, "level", level);
    append_field(line, "message", message);
    line += "}\n";
    out().write(line, true);
}

}  // namespace integration::host
