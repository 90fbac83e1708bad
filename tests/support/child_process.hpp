#ifndef INTEGRATION_TESTS_SUPPORT_CHILD_PROCESS_HPP
#define INTEGRATION_TESTS_SUPPORT_CHILD_PROCESS_HPP

// Starts a peer process (e.g. a Node.js server), reads its first stdout line, stops it at scope exit.

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <stdexcept>
#include <string>
#include <vector>

namespace integration::testing {

class child_process {
public:
    explicit child_process(std::vector<std::string> argv) {
        int out[2];
        if (::pipe(out) != 0) throw std::runtime_error("pipe failed");
        pid_ = ::fork();
        if (pid_ < 0) throw std::runtime_error("fork failed");
        if (pid_ == 0) {
            ::dup2(out[1], STDOUT_FILENO);
            ::close(out[0]);
            ::close(out[1]);
            std::vector<char*> args;
            for (auto& a : argv) args.push_back(a.data());
            args.push_back(nullptr);
            ::execvp(args[0], args.data());
            ::_exit(127);
        }
        ::close(out[1]);
        out_ = ::fdopen(out[0], "r");
    }
    ~child_process() {
        ::kill(pid_, SIGTERM);
        int status = 0;
        ::waitpid(pid_, &status, 0);
        if (out_) std::fclose(out_);
    }
    child_process(child_process const&) = delete;
    child_process& operator=(child_process const&) = delete;

    /** The next line the child printed (without the newline); empty at end of output. */
    std::string read_line() {
        std::string line;
        int c;
        while ((c = std::fgetc(out_)) != EOF && c != '\n') line += static_cast<char>(c);
        return line;
    }

private:
    pid_t pid_ = -1;
    std::FILE* out_ = nullptr;
};

}  // namespace integration::testing

#endif
