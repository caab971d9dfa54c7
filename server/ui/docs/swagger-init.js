// Swagger UI at /docs, reading this server's /openapi.json. Kept out of the
// page so that the page's Content-Security-Policy allows no inline script.
"use strict";

(function () {
  // Relative to the page, so a server behind a path prefix still works.
  const spec = new URL("openapi.json", document.baseURI).href;
  const here = window.location.origin;

  window.ui = SwaggerUIBundle({
    url: spec,
    dom_id: "#swagger-ui",
    deepLinking: true,
    // No call to validator.swagger.io.
    validatorUrl: null,
    // The key typed in "Authorize" lives in this page only: it is not kept
    // in the browser's storage.
    persistAuthorization: false,
    displayRequestDuration: true,
    // The key goes to this server and nowhere else: the document names no
    // other server and the page's policy allows no other origin
    // (connect-src 'self'); requests that would leave the origin lose their
    // credentials here as well.
    requestInterceptor: function (req) {
      let target;
      try {
        target = new URL(req.url, window.location.href);
      } catch (e) {
        return req;
      }
      if (target.origin !== here && req.headers) {
        for (const name of Object.keys(req.headers)) {
          const n = name.toLowerCase();
          if (n === "x-api-key" || n === "authorization" || n === "cookie") {
            delete req.headers[name];
          }
        }
      }
      return req;
    },
  });
})();
