#ifndef INTEGRATION_TESTS_HOST_HOST_PROCESS_HPP
#define INTEGRATION_TESTS_HOST_HOST_PROCESS_HPP

// Runs the real integration-host binary: `serve` as a child whose stdout announces the port and
// whose stderr (the access log) goes to a file, and `keys create` to mint keys.

#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace integration::testing {

inline std::string run_and_capture(std::string const& command) {
    std::string out;
    std::FILE* p = ::popen(command.c_str(), "r");
    if (!p) throw std::runtime_error("popen failed");
    char buf[512];
    while (auto n = std::fread(buf, 1, sizeof buf, p)) out.append(buf, n);
    ::pclose(p);
    return out;
}

/** `keys create`; the key is the last line of its output. */
inline std::string create_key(std::string const& data, std::string const& tenant, bool admin = false) {
    auto out = run_and_capture(std::string(INTEGRATION_HOST_BIN) + " keys create --data " + data + " --tenant " + tenant +
                               (admin ? " --admin" : ""));
    while (!out.empty() && out.back() == '\n') out.pop_back();
    return out.substr(out.rfind('\n') + 1);
}

/** A fresh data directory for one test, removed at scope exit. */
class scratch_dir {
public:
    explicit scratch_dir(std::string const& name)
        : path_(std::filesystem::temp_directory_path() / ("integration-host-" + name + "-" + std::to_string(::getpid()))) {
        std::filesystem::remove_all(path_);
        std::filesystem::create_directories(path_);
    }
    ~scratch_dir() {
        std::error_code ignored;
        std::filesystem::remove_all(path_, ignored);
    }
    scratch_dir(scratch_dir const&) = delete;
    scratch_dir& operator=(scratch_dir const&) = delete;
    std::filesystem::path const& path() const { return path_; }
    std::string string() const { return path_.string(); }

private:
    std::filesystem::path path_;
};

class host_process {
public:
    /** `open_files` > 0 sets the child's RLIMIT_NOFILE before exec (a host short of descriptors). */
    host_process(std::string const& data, std::vector<std::string> extra = {}, rlim_t open_files = 0)
        : log_(data + "/host.log") {
        int out[2];
        if (::pipe(out) != 0) throw std::runtime_error("pipe failed");
        pid_ = ::fork();
        if (pid_ == 0) {
            ::dup2(out[1], STDOUT_FILENO);
            std::FILE* err = std::fopen(log_.c_str(), "a");
            ::dup2(::fileno(err), STDERR_FILENO);
            ::close(out[0]);
            ::close(out[1]);
            if (open_files > 0) {
                rlimit limit{open_files, open_files};
                ::setrlimit(RLIMIT_NOFILE, &limit);
            }
            std::vector<std::string> argv{INTEGRATION_HOST_BIN, "serve", "--data", data, "--listen", "127.0.0.1:0"};
            // Loopback is allowed unless the test chooses its own allow-list.
            if (std::find(extra.begin(), extra.end(), "--egress-allow") == extra.end())
                argv.insert(argv.end(), {"--egress-allow", "127.0.0.0/8"});
            argv.insert(argv.end(), extra.begin(), extra.end());
            std::vector<char*> args;
            for (auto& a : argv) args.push_back(a.data());
            args.push_back(nullptr);
            ::execv(args[0], args.data());
            ::_exit(127);
        }
        ::close(out[1]);
        out_ = ::fdopen(out[0], "r");
        std::string line;
        int c;
        while ((c = std::fgetc(out_)) != EOF && c != '\n') line += static_cast<char>(c);
        auto colon = line.rfind(':');
        if (line.rfind("listening on http://", 0) != 0 || colon == std::string::npos)
            throw std::runtime_error("host did not start: '" + line + "'; log: " + log());
        port_ = static_cast<std::uint16_t>(std::stoi(line.substr(colon + 1)));
    }
    ~host_process() {
        if (pid_ > 0) {
            ::kill(pid_, SIGTERM);
            wait();
        }
        if (out_) std::fclose(out_);
    }
    host_process(host_process const&) = delete;
    host_process& operator=(host_process const&) = delete;

    std::uint16_t port() const { return port_; }
    void terminate() { ::kill(pid_, SIGTERM); }
    /** SIGKILL: no drain, no flush, as a crash would end it. */
    void kill_now() { ::kill(pid_, SIGKILL); }
    /** Waits for the exit; the exit code, or -signal. */
    int wait() {
        int status = 0;
        ::waitpid(pid_, &status, 0);
        pid_ = -1;
        return WIFEXITED(status) ? WEXITSTATUS(status) : -WTERMSIG(status);
    }
    std::string log() const {
        std::ifstream in(log_);
        std::stringstream ss;
        ss << in.rdbuf();
        return ss.str();
    }
    /** The log once it holds `text`: access lines reach it in batches, within 50 ms. */
    std::string log_with(std::string_view text, std::chrono::milliseconds within = std::chrono::milliseconds(5'000)) const {
        auto until = std::chrono::steady_clock::now() + within;
        auto text_now = log();
        while (text_now.find(text) == std::string::npos && std::chrono::steady_clock::now() < until) {
            std::this_thread::sleep_for(std::chrono::milliseconds(10));
            text_now = log();
        }
        return text_now;
    }

private:
    std::string log_;
    pid_t pid_ = -1;
    std::FILE* out_ = nullptr;
    std::uint16_t port_ = 0;
};

}  // namespace integration::testing

#endif
