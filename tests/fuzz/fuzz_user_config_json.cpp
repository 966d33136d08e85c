// libFuzzer target: the JSON user-config of the SqlUserConfig plugin
// (mtp::plugins::applyUserConfigJson, cJSON underneath).
//
// The input is the text of the config column. It is applied to a session that already holds
// a few variables. Checks:
//   - no crash / sanitizer report; the only exception is UserConfigJsonError, and then the
//     session is untouched;
//   - on success the session holds what an independent walk over the parsed object expects
//     (the earlier variables, members set in order, the last duplicate winning, null erasing),
//     with no duplicate names; array and object members are stored as JSON text that parses
//     back to an equal value.
#include <cjson/cJSON.h>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <utility>
#include <vector>

#include "mtpolicyd/core/Session.h"
#include "mtpolicyd/plugins/UserConfigJson.h"
#include "mtpolicyd/util/Log.h"

using mtp::Session;
using mtp::plugins::UserConfigJsonError;
using mtp::plugins::applyUserConfigJson;

namespace {

[[noreturn]] void fail(const char* what) {
    std::fprintf(stderr, "fuzz_user_config_json: invariant violated: %s\n", what);
    std::abort();
}
#define CHECK(cond)               \
    do {                          \
        if (!(cond)) fail(#cond); \
    } while (0)

using Vars = std::vector<Session::Var>;

// Structural equality of a value printed and parsed back (`back`) with the original; cJSON
// prints a non-finite number as null, and numbers to 15 significant digits.
bool sameJson(const cJSON* back, const cJSON* orig) {
    if (cJSON_IsNumber(orig) && !std::isfinite(orig->valuedouble)) return cJSON_IsNull(back);
    if ((back->type & 0xFF) != (orig->type & 0xFF)) return false;
    // cJSON prints with 15 significant digits when that reads back "equal" by its own
    // epsilon comparison, so the last bits may differ.
    if (cJSON_IsNumber(orig))
        return std::fabs(back->valuedouble - orig->valuedouble) <= std::fabs(orig->valuedouble) * 1e-14;
    if (cJSON_IsString(orig)) return std::string(back->valuestring) == orig->valuestring;
    if (cJSON_IsArray(orig) || cJSON_IsObject(orig)) {
        const cJSON* b = back->child;
        const cJSON* o = orig->child;
        for (; b && o; b = b->next, o = o->next) {
            if (cJSON_IsObject(orig) && std::string(b->string) != o->string) return false;
            if (!sameJson(b, o)) return false;
        }
        return !b && !o;
    }
    return true;  // null, true, false
}

Session preset() {
    Session s;
    s.set("quota_count", "5");
    s.set("score", "1.5");
    s.set("", "empty name");
    return s;
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
    mtp::log::g_level = -1;  // nothing to log
    return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    std::string json(reinterpret_cast<const char*>(data), size);
    Session s = preset();
    const Vars before = s.vars;
    bool threw = false;
    try {
        applyUserConfigJson(json, s);
    } catch (const UserConfigJsonError&) {
        threw = true;
    }
    cJSON* root = cJSON_ParseWithLength(json.data(), json.size());
    bool isObject = root && cJSON_IsObject(root);
    CHECK(threw == !isObject);
    if (threw) {
        CHECK(s.vars == before);
        cJSON_Delete(root);
        return 0;
    }
    // The expected variables: name, value, and how to compare the value.
    enum class Kind { Exact, Number, Json };
    struct Expect {
        std::string name, value;
        Kind kind;
        const cJSON* item;
    };
    std::vector<Expect> expected;
    for (const auto& v : before) expected.push_back({v.first, v.second, Kind::Exact, nullptr});
    for (cJSON* item = root->child; item; item = item->next) {
        CHECK(item->string != nullptr);  // cJSON always names object members
        const std::string name = item->string;
        auto it = expected.begin();
        while (it != expected.end() && it->name != name) ++it;
        if (cJSON_IsNull(item)) {
            if (it != expected.end()) expected.erase(it);
            continue;
        }
        Expect e{name, "", Kind::Exact, item};
        if (cJSON_IsString(item)) {
            e.value = item->valuestring ? item->valuestring : "";
        } else if (cJSON_IsBool(item)) {
            e.value = cJSON_IsTrue(item) ? "1" : "0";
        } else if (cJSON_IsNumber(item)) {
            e.kind = Kind::Number;
        } else {
            CHECK(cJSON_IsArray(item) || cJSON_IsObject(item));
            e.kind = Kind::Json;
        }
        if (it != expected.end()) {
            it->value = e.value;
            it->kind = e.kind;
            it->item = e.item;
        } else {
            expected.push_back(e);
        }
    }
    // Same names in the same order, no duplicates, the values as expected.
    CHECK(s.vars.size() == expected.size());
    for (size_t i = 0; i < s.vars.size(); ++i) {
        CHECK(s.vars[i].first == expected[i].name);
        for (size_t j = 0; j < i; ++j) CHECK(s.vars[j].first != s.vars[i].first);
        const std::string& v = s.vars[i].second;
        switch (expected[i].kind) {
            case Kind::Exact:
                CHECK(v == expected[i].value);
                break;
            case Kind::Number: {
                char* end = nullptr;
                double d = std::strtod(v.c_str(), &end);
                CHECK(!v.empty() && end && *end == '\0');
                double want = expected[i].item->valuedouble;
                if (std::isfinite(want) && want == std::floor(want) && std::fabs(want) < 1e15) CHECK(d == want);
                else if (std::isfinite(want)) CHECK(std::fabs(d - want) <= std::fabs(want) * 1e-14);
                break;
            }
            case Kind::Json: {
                cJSON* back = cJSON_ParseWithLength(v.data(), v.size());
                CHECK(back != nullptr);
                CHECK(sameJson(back, expected[i].item));
                cJSON_Delete(back);
                break;
            }
        }
    }
    cJSON_Delete(root);
    return 0;
}
