// Stop strings over streamed text: text arrives in pieces, and a piece is released only once no
// later text can make a stop string match across it, so a matched stop string (and whatever
// follows it) never reaches the client.
#pragma once

#include <string>
#include <vector>

namespace kvcc::serving {

class StopMatcher {
 public:
  explicit StopMatcher(std::vector<std::string> stops) : stops_(std::move(stops)) {}

  // Adds `text`; returns what can be released now. Once a stop string matched, returns the
  // text before it and stopped() is true (later calls return nothing).
  std::string Put(const std::string& text);
  // The end of the text: everything held back (nothing once stopped).
  std::string Finish();
  bool stopped() const { return stopped_; }

 private:
  std::vector<std::string> stops_;
  std::string held_;
  bool stopped_ = false;
};

}  // namespace kvcc::serving
