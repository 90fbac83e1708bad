// The JSON request a peer script reads from stdin. Input that is not JSON is reported by
// `refuse(message)`, in the form that script answers in, and the script exits with code 2.
export async function readStdinJson(refuse) {
  let input = '';
  for await (const chunk of process.stdin) input += chunk;
  try {
    return JSON.parse(input);
  } catch (e) {
    refuse(`stdin is not JSON: ${e.message}`);
    process.exit(2);
  }
}
