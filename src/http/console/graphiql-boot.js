// Starts GraphiQL (vendored, see vendor/VERSIONS.md) on quire's GraphiQL page.
// An external file because the page's Content-Security-Policy forbids inline
// script. The key comes from the console's sessionStorage entry (the same
// tab), or from the first screen, which explains how to add one instead of
// letting GraphiQL run into a 401.
"use strict";
(function () {
  var KEY = "quire.apiKey";
  var intro = document.getElementById("intro");

  function showIntro(reason) {
    if (reason) {
      var p = document.getElementById("intro-reason");
      p.textContent = reason;
      p.className = "error";
    }
    intro.hidden = false;
    document.getElementById("intro-key").focus();
  }

  document.getElementById("intro-form").addEventListener("submit", function (e) {
    e.preventDefault();
    var key = document.getElementById("intro-key").value.trim();
    if (!key) return;
    sessionStorage.setItem(KEY, key);
    intro.hidden = true;
    start();
  });

  // GraphiQL keeps its tabs and history in this storage: the tab's
  // sessionStorage, so nothing it holds outlives the tab, and without any
  // `headers` (its history would otherwise keep a copy of the key).
  function withoutHeaders(v) {
    try {
      return JSON.stringify(JSON.parse(v), function (name, val) { return name === "headers" ? undefined : val; });
    } catch (e) {
      return v;
    }
  }
  var storage = {
    getItem: function (k) { return sessionStorage.getItem("graphiql:" + k); },
    setItem: function (k, v) { sessionStorage.setItem("graphiql:" + k, withoutHeaders(v)); },
    removeItem: function (k) { sessionStorage.removeItem("graphiql:" + k); },
    clear: function () {},
    get length() { return 0; },
  };

  function start() {
    var key = sessionStorage.getItem(KEY);
    if (!key) return showIntro("");
    fetch("/graphql", {
      method: "POST",
      headers: { "content-type": "application/json", accept: "application/json", "x-api-key": key },
      body: JSON.stringify({ query: "{ viewer { key { name } } }" }),
    }).then(function (res) {
      if (res.status === 401) {
        sessionStorage.removeItem(KEY);
        return showIntro("quire refused this key (revoked, expired or mistyped). Paste another one:");
      }
      var headers = JSON.stringify({ "x-api-key": key }, null, 2);
      var root = ReactDOM.createRoot(document.getElementById("graphiql"));
      root.render(React.createElement(GraphiQL, {
        fetcher: GraphiQL.createFetcher({ url: "/graphql" }),
        headers: headers,
        defaultHeaders: headers,
        shouldPersistHeaders: false,
        storage: storage,
        defaultQuery: "# The x-api-key header (Headers tab) holds the console's key.\n" +
          "{\n  viewer {\n    key { name type mode scopes }\n    project { name }\n    rateLimit { limit remaining }\n  }\n}\n",
      }));
    }, function (err) {
      showIntro("quire did not answer: " + err);
    });
  }

  start();
})();
